import { HostError } from '../errors.js'
import { findBinary } from '../host/find-binary.js'
import { installCommand } from '../host/requirements.js'
import type { BackendName } from '../spec/vm-spec.js'
import type { Hypervisor } from './hypervisor.js'
import { NoopHypervisor } from './noop/noop-hypervisor.js'
import { QemuHypervisor } from './qemu/qemu-hypervisor.js'

/** Backends that can run real guests, in order of preference for 'auto'. */
const realBackends: { name: BackendName; available: () => Promise<boolean> }[] = [
  { name: 'qemu', available: async () => (await findBinary('qemu-system-x86_64')) !== undefined },
]

/** Picks the backend: a named one as asked, or for 'auto' the first real one this host offers. */
export async function chooseBackend(requested: BackendName | 'auto', offers = realBackends): Promise<BackendName> {
  if (requested !== 'auto') return requested
  for (const backend of offers) {
    if (await backend.available()) return backend.name
  }
  throw new HostError('no hypervisor backend is available on this host (qemu-system-x86_64 not found)', installCommand(['qemu-system-x86', 'qemu-utils']))
}

const instances = new Map<BackendName, Hypervisor>()

/** One backend instance per process and name. */
export function hypervisorFor(name: BackendName): Hypervisor {
  let instance = instances.get(name)
  if (!instance) {
    instance = name === 'qemu' ? new QemuHypervisor() : new NoopHypervisor()
    instances.set(name, instance)
  }
  return instance
}
