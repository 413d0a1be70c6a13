import { describe, expect, it } from 'vitest'
import { HypervisorError, SpecError, UnsupportedError } from '../../src/errors.js'
import { NoopHypervisor } from '../../src/hypervisor/noop/noop-hypervisor.js'
import { Vm } from '../../src/machine/vm.js'

describe('Vm over the no-op backend', () => {
  it('goes through prepare, start, suspend, resume and destroy, and destroy is idempotent', async () => {
    const hypervisor = new NoopHypervisor()
    const vm = await Vm.start({ image: 'tiny', name: 'a' }, { hypervisor })
    expect((await vm.state()).status).toBe('running')
    await vm.suspend()
    expect((await vm.state()).status).toBe('paused')
    await expect(vm.suspend()).rejects.toThrow(HypervisorError)
    await vm.resume()
    await vm.stop()
    await vm.stop()
    await vm.destroy()
    await vm.destroy()
    expect((await vm.state()).status).toBe('destroyed')
    expect(hypervisor.calls).toEqual(['prepare a', 'start a', 'suspend a', 'suspend a', 'resume a', 'stop a', 'stop a', 'destroy a'])
    expect(hypervisor.liveCount).toBe(0)
  })

  it('disposes with await using', async () => {
    const hypervisor = new NoopHypervisor()
    {
      await using vm = await Vm.start({ image: 'tiny' }, { hypervisor })
      expect(hypervisor.liveCount).toBe(1)
      void vm
    }
    expect(hypervisor.liveCount).toBe(0)
  })

  it('refuses exec with a typed error, since the no-op backend has no SSH', async () => {
    const vm = await Vm.start({ image: 'tiny' }, { hypervisor: new NoopHypervisor() })
    await expect(vm.exec('true')).rejects.toThrow(UnsupportedError)
    await vm.destroy()
  })

  it('checks the spec before the backend is touched', async () => {
    const hypervisor = new NoopHypervisor()
    await expect(Vm.start({ image: 'tiny', memory: 0 }, { hypervisor })).rejects.toThrow(SpecError)
    await expect(Vm.start({ image: 'tiny', backend: 'qemu' }, { hypervisor })).rejects.toThrow(/names 'qemu'/)
    expect(hypervisor.calls).toEqual([])
  })
})
