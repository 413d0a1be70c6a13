import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HypervisorError } from '../../errors.js'
import { interfaceXml, type DomainDefinition } from './domain-xml.js'
import type { LibvirtVm } from './libvirt-vm.js'

/**
 * Whether a fenced domain's fence goes on after its start (fenceStartedDomain) rather than at it:
 * only where QEMU itself carries the NIC's frames, since its net layer drops every frame of a NIC
 * whose link is down. Under KVM libvirt hands the frames to vhost-net in the host kernel, which
 * does not look at that link state, so a KVM domain is fenced before its guest runs.
 */
export function fencesAfterStart(definition: DomainDefinition): boolean {
  return definition.fenced !== false && definition.type === 'qemu'
}

/**
 * Puts the fence on the NIC of a domain started with its link down and no filter (domainXml's
 * fenceAfterStart), then brings the link up. No frame passes either way while the link is down
 * (fencesAfterStart), so the guest reaches nothing unfenced; meanwhile it boots, and the
 * filter's firewall commands (~120, 0.7 s before a guest runs and 1.5–1.7 s beside a booting one
 * here) overlap its boot instead of adding to it. Two steps, so that the link comes up only once
 * the filter is in place. A failure destroys the domain.
 */
export async function fenceStartedDomain(record: Pick<LibvirtVm, 'connection' | 'dir' | 'definition' | 'stopping'>, vmName: string): Promise<void> {
  const { connection, definition } = record
  try {
    const file = join(record.dir, 'fenced-interface.xml')
    await writeFile(file, interfaceXml(definition, { fenced: true, linkUp: false }), { mode: 0o600 })
    await connection.run(['update-device', definition.name, file, '--live'])
    await connection.run(['domif-setlink', definition.name, definition.mac, 'up'])
  } catch (error) {
    // The harness stops it: its Stopped event is not the guest crashing.
    record.stopping = 'sigkill'
    await connection.tryRun(['destroy', definition.name])
    throw new HypervisorError(`could not fence the guest off the hypervisor host, so it was stopped with its network still down: ${(error as Error).message}`, { vm: vmName, cause: error })
  }
}
