import { randomBytes } from 'node:crypto'
import { open, rm, stat, truncate } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { HypervisorError, SshError } from '../../src/errors.js'
import { CleanMachine } from '../../src/machine/clean-machine.js'
import type { Vm } from '../../src/machine/vm.js'
import { processRunning } from '../helpers/host-state.js'

// Each scenario is a test that goes wrong in one way; the next test on the same machine must
// find a working, clean VM. A key of its own per run, so the cache is left as found.
const runKey = randomBytes(6).toString('hex')
const goldenDirs = new Set<string>()

function machine(name: string): CleanMachine {
  return new CleanMachine(name, { image: 'tiny', setupKey: runKey, setup: (vm) => vm.succeed('echo golden > /root/state').then(() => undefined) })
}

function note(scenario: string, what: string, ms: number): void {
  process.stdout.write(`[fault] ${scenario}: ${what} after ${ms} ms\n`)
}

async function expectWorkingClean(vm: Vm): Promise<void> {
  expect(await vm.succeed('cat /root/state')).toBe('golden\n')
}

async function vmDirOf(vm: Vm): Promise<string> {
  const endpoint = vm.hypervisor.consoleEndpoint(vm.handle)
  return endpoint.kind === 'unix-socket' ? dirname(endpoint.logPath) : ''
}

afterAll(async () => {
  for (const dir of goldenDirs) await rm(dir, { recursive: true, force: true })
})

describe('faults in the middle of a test', () => {
  const box = machine('faults')

  afterAll(async () => {
    if (box.goldenSnapshotDir) goldenDirs.add(dirname(box.goldenSnapshotDir))
    await box.close()
  })

  it('QEMU killed mid-command: that command fails saying so, the next test gets a fresh VM, nothing of the dead one is left', async () => {
    const vm = await box.acquire()
    const pid = (await vm.state()).pid as number
    const dir = await vmDirOf(vm)
    // Killed only once the guest says the command is running, so the kill lands mid-command.
    let started!: () => void
    const commandRunning = new Promise<void>((resolve) => (started = resolve))
    const running = vm.exec('echo started; sleep 30', { onStdout: () => started() })
    await commandRunning
    const killed = Date.now()
    process.kill(pid, 'SIGKILL')
    const error = await running.catch((e: unknown) => e)
    note('QEMU killed mid-command', 'error', Date.now() - killed)
    expect(error).toBeInstanceOf(HypervisorError)
    expect((error as Error).message).toMatch(/vm 'faults': the VM ended while running 'echo started; sleep 30' \(signal SIGKILL\)/)
    expect(Date.now() - killed).toBeLessThan(5_000)
    box.release(vm)
    const next = await box.acquire()
    expect((await next.state()).pid).not.toBe(pid)
    await expectWorkingClean(next)
    box.release(next)
    await box.acquire().then((vm3) => box.release(vm3))
    expect(await processRunning(pid)).toBe(false)
    await expect(stat(dir)).rejects.toThrow(/ENOENT/)
  })

  it('sshd killed in the guest: commands fail with an SSH error at once, the next test reaches its VM again', async () => {
    const vm = await box.acquire()
    const started = Date.now()
    const error = await vm.exec('killall dropbear; sleep 5').then(
      () => undefined,
      (e: unknown) => e,
    )
    note('sshd killed in the guest', 'error', Date.now() - started)
    expect(error).toBeInstanceOf(SshError)
    expect((error as Error).message).toMatch(/connection closed before the command finished|session is closed/)
    await expect(vm.exec('true')).rejects.toThrow(SshError)
    box.release(vm)
    const next = await box.acquire()
    await expectWorkingClean(next)
    box.release(next)
  })

  it('guest disk full: the write fails with ENOSPC in stderr, the next test has its space back', async () => {
    const vm = await box.acquire()
    const started = Date.now()
    const full = await vm.exec('dd if=/dev/zero of=/root/fill bs=1M 2>&1; sync')
    note('guest disk full', 'ENOSPC', Date.now() - started)
    expect(full.stdout).toContain('No space left on device')
    const again = await vm.exec('dd if=/dev/zero of=/root/more bs=1M count=1 2>&1 && sync')
    expect(again.exitCode, again.stdout).not.toBe(0)
    box.release(vm)
    const next = await box.acquire()
    await expectWorkingClean(next)
    await next.fail('test -e /root/fill')
    await next.succeed('dd if=/dev/zero of=/root/more bs=1M count=1 && sync')
    box.release(next)
  })
})

describe('damaged golden snapshots', () => {
  it.each([
    ['cut short', (path: string) => truncate(path, 4096)],
    ['overwritten in place', (path: string) => overwriteMiddle(path)],
  ])('a golden RAM state %s is detected and the golden snapshot rebuilt, never loaded', async (how, damage) => {
    const first = machine('damaged')
    const vm = await first.acquire()
    const snapshotDir = first.goldenSnapshotDir as string
    goldenDirs.add(dirname(snapshotDir))
    first.release(vm)
    await first.close()
    await damage(join(snapshotDir, 'state.bin'))
    const second = machine('damaged')
    const started = Date.now()
    try {
      const rebuilt = await second.acquire()
      note(`golden state.bin ${how}`, 'detected, rebuilt and handed over', Date.now() - started)
      expect(second.goldenBuilt).toBe(true)
      await expectWorkingClean(rebuilt)
    } finally {
      await second.close()
    }
  })
})

async function overwriteMiddle(path: string): Promise<void> {
  const { size } = await stat(path)
  const file = await open(path, 'r+')
  try {
    await file.write(Buffer.alloc(4096, 0xa5), 0, 4096, Math.floor(size / 2))
  } finally {
    await file.close()
  }
}
