import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { SpecError } from '../../src/errors.js'
import { NoopHypervisor } from '../../src/hypervisor/noop/noop-hypervisor.js'
import { CleanMachine, type MachineConfig } from '../../src/machine/clean-machine.js'
import type { Vm } from '../../src/machine/vm.js'
import { WarmPool } from '../../src/machine/warm-pool.js'
import { useTemporaryCache } from '../helpers/temporary-cache.js'

// The fixture layer over the no-op backend, whose "guest" is a record that snapshots copy and restores bring back.
useTemporaryCache('file')

function setUp(hypervisor: NoopHypervisor, counter: { runs: number }) {
  return (vm: Vm) => {
    counter.runs++
    hypervisor.guestState(vm.handle).state = 'golden'
  }
}

function machine(hypervisor: NoopHypervisor, config: Partial<MachineConfig>, counter = { runs: 0 }): CleanMachine {
  return new CleanMachine('m', { image: 'tiny', setupKey: randomBytes(4).toString('hex'), setup: setUp(hypervisor, counter), ...config }, { hypervisor })
}

describe('CleanMachine over the no-op backend', () => {
  it('snapshot rollback (internal, the default without a pool): each test sees the golden state, whatever the last one did', async () => {
    const hypervisor = new NoopHypervisor()
    const counter = { runs: 0 }
    const m = machine(hypervisor, { pool: 0 }, counter)
    for (let test = 0; test < 3; test++) {
      const vm = await m.acquire()
      expect(hypervisor.guestState(vm.handle)).toEqual({ state: 'golden' })
      hypervisor.guestState(vm.handle).state = `dirty ${test}`
      m.release(vm)
    }
    expect(counter.runs).toBe(1)
    expect(hypervisor.calls.filter((call) => call.startsWith('restore m clean'))).toHaveLength(2)
    await m.close()
    expect(hypervisor.liveCount).toBe(0)
  })

  it('external rollback: each test gets a new clone of the golden state', async () => {
    const hypervisor = new NoopHypervisor()
    const m = machine(hypervisor, { pool: 0, snapshotKind: 'external' })
    const first = await m.acquire()
    hypervisor.guestState(first.handle).state = 'dirty'
    const second = await m.acquire()
    expect(second).not.toBe(first)
    expect(hypervisor.guestState(second.handle)).toEqual({ state: 'golden' })
    await m.close()
    expect(hypervisor.liveCount).toBe(0)
  })

  it('finds the golden snapshot on disk: a second machine with the same recipe runs no setup', async () => {
    const hypervisor = new NoopHypervisor()
    const counter = { runs: 0 }
    const config = { image: 'tiny', setupKey: 'shared-recipe', setup: setUp(hypervisor, counter), pool: 0 }
    const first = new CleanMachine('m', config, { hypervisor })
    await first.acquire()
    const second = new CleanMachine('m', config, { hypervisor })
    const vm = await second.acquire()
    expect(counter.runs).toBe(1)
    expect([first.goldenBuilt, second.goldenBuilt]).toEqual([true, false])
    expect(hypervisor.guestState(vm.handle)).toEqual({ state: 'golden' })
    expect(hypervisor.calls).toContain('prepare m from snapshot')
    await Promise.all([first.close(), second.close()])
  })

  it('warm pool (internal, the default): a used VM is reloaded in the background and handed out again, clean', async () => {
    const hypervisor = new NoopHypervisor()
    const m = machine(hypervisor, { pool: 1 })
    const used: Vm[] = []
    for (let test = 0; test < 5; test++) {
      const vm = await m.acquire()
      expect(hypervisor.guestState(vm.handle)).toEqual({ state: 'golden' })
      hypervisor.guestState(vm.handle).state = `dirty ${test}`
      used.push(vm)
      m.release(vm)
    }
    // The first VM (from the golden snapshot) is retired; the pool's two VMs take turns after it.
    expect(new Set(used).size).toBe(3)
    expect(used[3]).toBe(used[1])
    expect(used[4]).toBe(used[2])
    expect(hypervisor.calls.filter((call) => call.startsWith('prepare m from snapshot'))).toHaveLength(2)
    expect(hypervisor.calls.filter((call) => call === 'restore m clean')).toHaveLength(3)
    await m.close()
    expect(hypervisor.liveCount).toBe(0)
  })

  it('without a pool in the config, the size comes from the host once the first VM shows its accelerator', async () => {
    const hypervisor = new NoopHypervisor()
    const defaulted = machine(hypervisor, {})
    expect(defaulted.poolSize).toBeUndefined()
    const vm = await defaulted.acquire()
    // The no-op backend's VMs cost nothing (accelerator 'none'): the full default.
    expect(defaulted.poolSize).toBe(2)
    defaulted.release(vm)
    expect(await defaulted.acquire()).not.toBe(vm)
    await defaulted.close()
    const clones = () => hypervisor.calls.filter((call) => call === 'prepare m from snapshot').length
    // A recycling pool of 2 keeps 2 clean clones beside the one in use.
    expect(clones()).toBe(3)
    hypervisor.calls.length = 0
    const off = machine(hypervisor, { pool: 0 })
    const first = await off.acquire()
    off.release(first)
    expect(await off.acquire()).toBe(first)
    expect(off.poolSize).toBe(0)
    expect(clones()).toBe(0)
    await off.close()
    expect(hypervisor.liveCount).toBe(0)
  })

  it('warm pool with external snapshots: every test gets a fresh clone and the used one is retired', async () => {
    const hypervisor = new NoopHypervisor()
    const m = machine(hypervisor, { pool: 2, snapshotKind: 'external' })
    const used: Vm[] = []
    for (let test = 0; test < 3; test++) {
      const vm = await m.acquire()
      expect(hypervisor.guestState(vm.handle)).toEqual({ state: 'golden' })
      hypervisor.guestState(vm.handle).state = 'dirty'
      used.push(vm)
      m.release(vm)
    }
    expect(new Set(used).size).toBe(3)
    expect(hypervisor.calls.filter((call) => call.startsWith('restore'))).toEqual([])
    await m.close()
    expect(hypervisor.liveCount).toBe(0)
  })

  it('warm pool: a VM its test stopped is replaced by a fresh clone', async () => {
    const hypervisor = new NoopHypervisor()
    const m = machine(hypervisor, { pool: 1 })
    m.release(await m.acquire())
    const stopped = await m.acquire()
    await stopped.stop()
    m.release(stopped)
    for (let test = 0; test < 3; test++) {
      const vm = await m.acquire()
      expect(vm).not.toBe(stopped)
      expect(hypervisor.guestState(vm.handle)).toEqual({ state: 'golden' })
      m.release(vm)
    }
    expect(hypervisor.calls.filter((call) => call.startsWith('prepare m from snapshot'))).toHaveLength(3)
    await m.close()
    expect(hypervisor.liveCount).toBe(0)
  })

  it("reboot runs setup on a fresh VM per test; 'none' keeps one VM and its changes", async () => {
    const hypervisor = new NoopHypervisor()
    const counter = { runs: 0 }
    const rebooting = machine(hypervisor, { rollback: 'reboot' }, counter)
    const a = await rebooting.acquire()
    const b = await rebooting.acquire()
    expect(b).not.toBe(a)
    expect(counter.runs).toBe(2)
    const shared = machine(hypervisor, { rollback: 'none' })
    const c = await shared.acquire()
    hypervisor.guestState(c.handle).state = 'changed'
    const d = await shared.acquire()
    expect(d).toBe(c)
    expect(hypervisor.guestState(d.handle)).toEqual({ state: 'changed' })
    await Promise.all([rebooting.close(), shared.close()])
    expect(hypervisor.liveCount).toBe(0)
  })

  it('a setup that throws fails the acquire, leaves no VM and no cache entry', async () => {
    const hypervisor = new NoopHypervisor()
    const m = new CleanMachine('m', { image: 'tiny', setupKey: 'throws', setup: () => Promise.reject(new Error('setup broke')) }, { hypervisor })
    await expect(m.acquire()).rejects.toThrow('setup broke')
    expect(hypervisor.liveCount).toBe(0)
    await m.close()
  })

  it('rejects bad settings by name', () => {
    const hypervisor = new NoopHypervisor()
    expect(() => machine(hypervisor, { pool: -1 })).toThrow(SpecError)
    expect(() => machine(hypervisor, { pool: -1 })).toThrow(/machines\.m\.pool/)
    expect(() => machine(hypervisor, { rollback: 'sometimes' as never })).toThrow(/rollback: must be one of 'snapshot', 'reboot', 'none'/)
  })
})

describe('WarmPool', () => {
  /** The pool only passes VMs around and destroys them at close, so stand-ins with a destroy do. */
  function recyclingPool(size: number) {
    const started: number[] = []
    const recycled: unknown[] = []
    const standIn = () => ({ destroy: async () => undefined }) as unknown as Vm
    const pool = new WarmPool({
      size,
      memoryMiB: 1,
      reserveMiB: 0,
      start: async () => (started.push(started.length), standIn()),
      recycle: async (vm) => (recycled.push(vm), vm),
    })
    return { pool, started, recycled }
  }

  const standInOutsideThePool = () => ({ destroy: async () => undefined }) as unknown as Vm

  it('recycling: keeps size VMs beside the one in use, and takes back only what it lent', async () => {
    const { pool, started, recycled } = recyclingPool(1)
    pool.fill()
    expect(started).toHaveLength(2)
    const lent = (await pool.take()) as Vm
    expect(started).toHaveLength(2)
    expect(pool.takeBack(standInOutsideThePool())).toBe(false)
    expect(pool.takeBack(lent)).toBe(true)
    expect(pool.takeBack(lent)).toBe(false)
    expect(recycled).toEqual([lent])
    expect(pool.size).toBe(2)
    await pool.close()
  })

  it('recycling: a pool that found no memory to fill tries again on the next take', async () => {
    let roomy = false
    const started: Vm[] = []
    const pool = new WarmPool({
      size: 1,
      memoryMiB: 1,
      reserveMiB: 0,
      start: async () => {
        const vm = standInOutsideThePool()
        started.push(vm)
        return vm
      },
      recycle: async (vm) => vm,
      availableMiB: () => (roomy ? 10_000 : 0),
    })
    pool.fill()
    expect(await pool.take()).toBeUndefined()
    expect(started).toHaveLength(0)
    roomy = true
    expect(await pool.take()).toBeUndefined()
    expect(started).toHaveLength(2)
    expect(await pool.take()).toBe(started[0])
    expect(started).toHaveLength(2)
    await pool.close()
  })

  it('recycling: a lent VM that will not come back is replaced', async () => {
    const { pool, started } = recyclingPool(1)
    pool.fill()
    const lent = (await pool.take()) as Vm
    pool.forget(lent)
    expect(started).toHaveLength(3)
    expect(pool.takeBack(lent)).toBe(false)
    await pool.close()
  })

  it('starts nothing when the host has no memory to spare', async () => {
    let started = 0
    const pool = new WarmPool({ size: 4, memoryMiB: 256, reserveMiB: 10 ** 9, start: async () => (started++, undefined as never) })
    pool.fill()
    expect(pool.size).toBe(0)
    expect(await pool.take()).toBeUndefined()
    expect(started).toBe(0)
  })
})
