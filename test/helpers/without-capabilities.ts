import type { Hypervisor } from '../../src/hypervisor/hypervisor.js'

/** The same backend, offering only what every backend must: no suspend, snapshots or keep. */
export function withoutCapabilities(backend: Hypervisor): Hypervisor {
  return {
    name: backend.name,
    prepare: (spec, options) => backend.prepare(spec, options),
    start: (vm, options) => backend.start(vm, options),
    stop: (vm, timeoutMs) => backend.stop(vm, timeoutMs),
    destroy: (vm) => backend.destroy(vm),
    state: (vm) => backend.state(vm),
    guestIp: (vm, network) => backend.guestIp(vm, network),
    consoleEndpoint: (vm) => backend.consoleEndpoint(vm),
    consoleTail: (vm, lines) => backend.consoleTail(vm, lines),
  }
}
