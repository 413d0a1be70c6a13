import { describe, expect, it } from 'vitest'
import { HypervisorError, SpecError, UnsupportedError } from '../../src/errors.js'
import { canKeep, canSnapshot, canSuspend } from '../../src/hypervisor/capabilities.js'
import { NoopHypervisor } from '../../src/hypervisor/noop/noop-hypervisor.js'
import { Vm } from '../../src/machine/vm.js'
import { withoutCapabilities } from '../helpers/without-capabilities.js'

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

  it('refuses console and keep with a typed error, since the no-op backend has no console and cannot keep a VM', async () => {
    const vm = await Vm.start({ image: 'tiny' }, { hypervisor: new NoopHypervisor() })
    expect(() => vm.console()).toThrow(UnsupportedError)
    await expect(vm.keep('a test failed')).rejects.toThrow(new UnsupportedError('noop', 'keep'))
    await vm.destroy()
  })

  it('tells capabilities apart by what a backend implements', () => {
    const noop = new NoopHypervisor()
    expect([canSuspend(noop), canSnapshot(noop), canKeep(noop)]).toEqual([true, true, false])
    const bare = withoutCapabilities(noop)
    expect([canSuspend(bare), canSnapshot(bare), canKeep(bare)]).toEqual([false, false, false])
  })

  it('refuses suspend and snapshots with a typed error naming the operation, on a backend without them', async () => {
    const noop = new NoopHypervisor()
    const vm = await Vm.start({ image: 'tiny', name: 'bare' }, { hypervisor: withoutCapabilities(noop) })
    for (const [operation, call] of [
      ['suspend', () => vm.suspend()],
      ['resume', () => vm.resume()],
      ['snapshot', () => vm.snapshot('s')],
      ['restore', () => vm.restore('s')],
      ['listSnapshots', () => vm.listSnapshots()],
    ] as const) {
      const failure = await call().catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(UnsupportedError)
      expect((failure as UnsupportedError).message).toBe(`the noop backend does not support ${operation}`)
    }
    expect((await vm.state()).status).toBe('running')
    await vm.destroy()
    expect(noop.calls).toEqual(['prepare bare', 'start bare', 'destroy bare'])
  })

  it('checks the spec before the backend is touched', async () => {
    const hypervisor = new NoopHypervisor()
    await expect(Vm.start({ image: 'tiny', memory: 0 }, { hypervisor })).rejects.toThrow(SpecError)
    await expect(Vm.start({ image: 'tiny', backend: 'qemu' }, { hypervisor })).rejects.toThrow(/names 'qemu'/)
    expect(hypervisor.calls).toEqual([])
  })
})
