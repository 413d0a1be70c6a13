import { locateRequired, missingRequirement } from '../host/requirements.js'
import type { BackendName } from '../spec/vm-spec.js'
import type { Hypervisor } from './hypervisor.js'
import { NoopHypervisor } from './noop/noop-hypervisor.js'
import { LibvirtHypervisor } from './libvirt/libvirt-hypervisor.js'
import { QemuHypervisor } from './qemu/qemu-hypervisor.js'

/** Backends that can run real guests, in order of preference for 'auto'. */
const realBackends: { name: BackendName; available: () => Promise<boolean> }[] = [
  { name: 'qemu', available: () => locateRequired('qemu-system').then(() => true, () => false) },
]

/** Picks the backend: a named one as asked, or for 'auto' the first real one this host offers. */
export async function chooseBackend(requested: BackendName | 'auto', offers = realBackends): Promise<BackendName> {
  if (requested !== 'auto') return requested
  for (const backend of offers) {
    if (await backend.available()) return backend.name
  }
  throw missingRequirement('qemu-system')
}

const instances = new Map<BackendName, Hypervisor>()

/** One backend instance per process and name. */
export function hypervisorFor(name: BackendName): Hypervisor {
  let instance = instances.get(name)
  if (!instance) {
    instance = name === 'qemu' ? new QemuHypervisor() : name === 'libvirt' ? new LibvirtHypervisor() : new NoopHypervisor()
    instances.set(name, instance)
  }
  return instance
}
