import { LibvirtError } from './libvirt-error.js'

/**
 * Loading an internal snapshot reads the guest's memory out of the qcow2 disk: with io_uring the
 * in-place load under libvirt took 85–98 ms here against 124–165 ms with QEMU's thread pool
 * (measured 2026-12, alternating, six restores each), as it does for the QEMU backend (disk-io.ts
 * there). libvirt's domain capabilities do not say whether a host's QEMU may use io_uring (it
 * may be built without it, or a seccomp or container profile may forbid it), so the first domain
 * on a host asks for it, and a refusal turns it off for that host.
 */
const refusedOn = new Set<string>()

/** The disk I/O mode a new domain on this host asks for: io_uring unless the host refused it. */
export function diskIoFor(uri: string): 'io_uring' | undefined {
  return refusedOn.has(uri) ? undefined : 'io_uring'
}

/** Whether a failed domain start was libvirt or QEMU refusing io_uring ("io uring is not supported by this QEMU binary", "Unable to use io_uring: …"). */
export function refusedIoUring(error: unknown): boolean {
  return error instanceof LibvirtError && /io[ _]?uring/i.test(error.message)
}

/** Remembers that this host's QEMU cannot use io_uring: its later domains use the thread pool. */
export function markIoUringRefused(uri: string): void {
  refusedOn.add(uri)
}
