import { LibvirtError } from './libvirt-error.js'
import type { DomainDefinition } from './domain-xml.js'

/**
 * Two parts of a domain that make it faster, but that a hypervisor host may lack:
 * - io_uring disk I/O: loading an internal snapshot reads the guest's memory out of the qcow2
 *   disk, and the in-place load took 85–98 ms here against 124–165 ms with QEMU's thread pool
 *   (measured 2026-12, alternating, six restores each). QEMU may be built without it, or a
 *   seccomp or container profile may forbid it.
 * - qboot as the firmware of a direct kernel boot (what QEMU's microvm boots with): a q35 guest
 *   reached its init's network step in 2.71 s against 3.23 s with SeaBIOS and PCIe root ports
 *   (QEMU alone, medians of 7, alternating). Debian ships it in qemu-system-data; other
 *   distributions may not.
 * libvirt's domain capabilities tell neither, so a host's first domain asks for both, and what
 * the host refuses is left out of that domain and of the host's later domains.
 */
export type DomainExtra = 'diskIo' | 'firmware'

export const qbootPath = '/usr/share/qemu/qboot.rom'

const refusedOn = new Map<string, Set<DomainExtra>>()

/** The extras a new domain on this host asks for (firmware only for a direct kernel boot). */
export function extrasFor(uri: string, directKernelBoot: boolean): Pick<DomainDefinition, 'diskIo' | 'firmware'> {
  const refused = refusedOn.get(uri) ?? new Set()
  return {
    diskIo: refused.has('diskIo') ? undefined : 'io_uring',
    firmware: directKernelBoot && !refused.has('firmware') ? qbootPath : undefined,
  }
}

/**
 * Which extra a failed domain start refused: libvirt's "io uring is not supported by this QEMU
 * binary" or QEMU's "Unable to use io_uring: …", and libvirt's "Path '…qboot.rom' is not
 * accessible" or QEMU's "could not load PC BIOS '…qboot.rom'" (both name the path). Only these:
 * QEMU quotes a disk's whole -blockdev, `"aio":"io_uring"` included, in unrelated disk errors.
 */
export function refusedExtra(definition: DomainDefinition, error: unknown): DomainExtra | undefined {
  if (!(error instanceof LibvirtError)) return undefined
  if (definition.diskIo && /io uring is not supported|Unable to use io_uring/i.test(error.message)) return 'diskIo'
  if (definition.firmware && error.message.includes(definition.firmware)) return 'firmware'
  return undefined
}

/** Leaves `extra` out of this host's later domains. */
export function markRefused(uri: string, extra: DomainExtra): void {
  const refused = refusedOn.get(uri) ?? new Set()
  refused.add(extra)
  refusedOn.set(uri, refused)
}
