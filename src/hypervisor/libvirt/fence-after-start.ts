import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HypervisorError } from '../../errors.js'
import { interfaceXml } from './domain-xml.js'
import type { LibvirtVm } from './libvirt-vm.js'

/**
 * Puts the fence on the NIC of a domain started with its link down and no filter (domainXml's
 * fenceAfterStart), then brings the link up. QEMU passes no frame either way while the link is
 * down, so the guest reaches nothing unfenced; meanwhile it boots, and the ~0.6 s the filter
 * takes (libvirt's firewall commands) no longer adds to the boot. Two steps, so that the link
 * comes up only once the filter is in place. A failure destroys the domain.
 */
export async function fenceStartedDomain(record: Pick<LibvirtVm, 'connection' | 'dir' | 'definition'>, vmName: string): Promise<void> {
  const { connection, definition } = record
  try {
    const file = join(record.dir, 'fenced-interface.xml')
    await writeFile(file, interfaceXml(definition, { fenced: true, linkUp: false }), { mode: 0o600 })
    await connection.run(['update-device', definition.name, file, '--live'])
    await connection.run(['domif-setlink', definition.name, definition.mac, 'up'])
  } catch (error) {
    await connection.tryRun(['destroy', definition.name])
    throw new HypervisorError(`could not fence the guest off the hypervisor host, so it was stopped before its network came up: ${(error as Error).message}`, { vm: vmName, cause: error })
  }
}
