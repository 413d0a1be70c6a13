import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { CleanMachine, type MachineConfig } from '../../src/machine/clean-machine.js'
import { waitForConsoleText } from '../../src/machine/console-watch.js'
import type { Vm } from '../../src/machine/vm.js'

// A key of its own per run, so the first use really builds and the cache is left as found.
const runKey = randomBytes(6).toString('hex')
const goldenDirs = new Set<string>()

function machine(name: string, config: Partial<MachineConfig> = {}): CleanMachine {
  return new CleanMachine(name, {
    image: 'tiny',
    setupKey: runKey,
    setup: async (vm) => {
      await vm.succeed('echo golden > /root/state')
    },
    ...config,
  })
}

function remember(m: CleanMachine): void {
  if (m.goldenSnapshotDir) goldenDirs.add(dirname(m.goldenSnapshotDir))
}

async function expectClean(vm: Vm): Promise<void> {
  expect(await vm.succeed('cat /root/state')).toBe('golden\n')
  await vm.fail('test -e /tmp/mark')
}

/** Runs `count` tests that each check they start clean and then dirty the VM; says which QEMU process served each. */
async function pidsOverCleanTests(m: CleanMachine, count: number): Promise<number[]> {
  const pids: number[] = []
  for (let test = 0; test < count; test++) {
    const vm = await m.acquire()
    remember(m)
    await expectClean(vm)
    await vm.succeed('touch /tmp/mark && echo dirty > /root/state')
    pids.push((await vm.state()).pid ?? 0)
    m.release(vm)
  }
  return pids
}

/** The command never answers: the kernel dies under it. The console says when. */
async function panicGuest(vm: Vm): Promise<void> {
  const endpoint = vm.hypervisor.consoleEndpoint(vm.handle)
  if (endpoint.kind !== 'unix-socket') throw new Error('the QEMU backend has a console log')
  void vm.exec('echo c > /proc/sysrq-trigger').catch(() => undefined)
  await waitForConsoleText(endpoint.logPath, ['Kernel panic'], { signal: AbortSignal.timeout(60_000) })
}

afterAll(async () => {
  for (const dir of goldenDirs) await rm(dir, { recursive: true, force: true })
})

describe('a machine rolled back between tests', () => {
  it('builds the golden snapshot once, finds it in the cache next time, and rebuilds it when setup changes', async () => {
    const first = machine('golden-a', { pool: 0 })
    const second = machine('golden-b', { pool: 0, snapshotKind: 'external' })
    const changed = machine('golden-c', {
      pool: 0,
      setup: async (vm) => {
        await vm.succeed('echo changed > /root/state')
      },
    })
    try {
      await first.acquire()
      remember(first)
      expect(first.goldenBuilt).toBe(true)
      const reused = await second.acquire()
      expect(second.goldenBuilt).toBe(false)
      expect(await reused.succeed('cat /root/state')).toBe('golden\n')
      await reused.succeed('echo dirty > /root/state; touch /tmp/mark')
      const clone = await second.acquire()
      expect(clone).not.toBe(reused)
      await expectClean(clone)
      const rebuilt = await changed.acquire()
      remember(changed)
      expect(changed.goldenBuilt).toBe(true)
      expect(await rebuilt.succeed('cat /root/state')).toBe('changed\n')
    } finally {
      await Promise.all([first.close(), second.close(), changed.close()])
    }
  })

  it('rolls back after the guest kernel panics, and after a test stops the VM', async () => {
    // Internal snapshots: the panicked guest is reloaded in its own process; the stopped one has none left.
    const m = machine('survivor', { pool: 0, snapshotKind: 'internal' })
    try {
      const vm = await m.acquire()
      remember(m)
      await vm.succeed('touch /tmp/mark')
      await panicGuest(vm)
      const afterPanic = await m.acquire()
      expect(afterPanic).toBe(vm)
      await expectClean(afterPanic)
      await afterPanic.succeed('touch /tmp/mark')
      await afterPanic.stop(1_000)
      const afterStop = await m.acquire()
      expect(afterStop).not.toBe(afterPanic)
      await expectClean(afterStop)
    } finally {
      await m.close()
    }
  })

  it('with a warm pool hands over another VM, already clean, after each test; a used VM is reloaded and comes round again', async () => {
    const m = machine('pooled', { pool: 1 })
    try {
      const pids = await pidsOverCleanTests(m, 5)
      // The first VM is retired; the pool's two take turns, each reloaded while the other is in use.
      expect(new Set(pids).size).toBe(3)
      expect([pids[3], pids[4]]).toEqual([pids[1], pids[2]])
    } finally {
      await m.close()
    }
  })

  it('with a warm pool, a VM whose kernel panicked is reloaded in the background and comes round again clean', async () => {
    const m = machine('pooled-panic', { pool: 1 })
    try {
      m.release(await m.acquire())
      const vm = await m.acquire()
      remember(m)
      const pid = (await vm.state()).pid
      await panicGuest(vm)
      m.release(vm)
      const other = await m.acquire()
      expect(other).not.toBe(vm)
      m.release(other)
      const again = await m.acquire()
      expect(again).toBe(vm)
      expect((await again.state()).pid).toBe(pid)
      await expectClean(again)
    } finally {
      await m.close()
    }
  })

  it('with a warm pool of external snapshots, every test gets a fresh clone', async () => {
    const m = machine('pooled-clones', { pool: 1, snapshotKind: 'external' })
    try {
      expect(new Set(await pidsOverCleanTests(m, 3)).size).toBe(3)
    } finally {
      await m.close()
    }
  })

  it("rollback 'none' keeps one VM and its changes", async () => {
    const m = machine('shared', { rollback: 'none' })
    try {
      const vm = await m.acquire()
      remember(m)
      await vm.succeed('touch /tmp/mark')
      m.release(vm)
      const again = await m.acquire()
      expect(again).toBe(vm)
      await again.succeed('test -e /tmp/mark')
    } finally {
      await m.close()
    }
  })
})
