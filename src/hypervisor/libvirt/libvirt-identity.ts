import type { ResolvedSpec } from '../../spec/vm-spec.js'
import { hypervisorFor } from '../router.js'
import type { LibvirtHypervisor } from './libvirt-hypervisor.js'

/** What a golden snapshot made under libvirt depends on besides the spec: the host it lives on, and that host's libvirt and QEMU. */
export async function libvirtIdentity(spec: ResolvedSpec): Promise<string> {
  const libvirt = hypervisorFor('libvirt') as LibvirtHypervisor
  const target = libvirt.target(spec)
  const { connection } = await libvirt.host(target)
  return `${target.uri}\n${connection.identity}`
}
