import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { processIsAlive } from '../../src/host/process-alive.js'
import { sweepStaleRuns } from '../../src/host/run-dir.js'

/** A process that names `path` on its command line, as a VM process of that run would. */
function holder(path: string) {
  return spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', path], { stdio: 'ignore' })
}

async function exitOf(child: ReturnType<typeof holder>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await new Promise((resolve) => child.once('exit', resolve))
}

describe('sweepStaleRuns', () => {
  const children: ReturnType<typeof holder>[] = []
  let root = ''

  afterEach(async () => {
    for (const child of children) child.kill('SIGKILL')
    await rm(root, { recursive: true, force: true })
  })

  async function fakeRun(name: string, ownerPid: number): Promise<string> {
    const run = join(root, name)
    await mkdir(join(run, 'vm-1'), { recursive: true })
    await writeFile(join(run, 'owner.json'), JSON.stringify({ pid: ownerPid }))
    return run
  }

  it("kills a dead owner's recorded VM process and removes its files, leaving live runs alone", async () => {
    root = await mkdtemp(join(tmpdir(), 'sweep-test-'))
    const deadOwner = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    await exitOf(deadOwner)
    const stale = await fakeRun('run-stale', deadOwner.pid!)
    const vmProcess = holder(stale)
    children.push(vmProcess)
    await writeFile(join(stale, 'vm-1', 'qemu.pid'), String(vmProcess.pid))
    const live = await fakeRun('run-live', process.pid)

    const report = await sweepStaleRuns(root)

    expect(report.runsRemoved).toEqual([stale])
    expect(report.processesKilled).toEqual([vmProcess.pid])
    await exitOf(vmProcess)
    expect(processIsAlive(vmProcess.pid!)).toBe(false)
    expect(existsSync(stale)).toBe(false)
    expect(existsSync(live)).toBe(true)
  })

  it("kills a dead owner's recorded vde_switch too, beside its QEMU", async () => {
    root = await mkdtemp(join(tmpdir(), 'sweep-test-'))
    const deadOwner = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    await exitOf(deadOwner)
    const stale = await fakeRun('run-stale', deadOwner.pid!)
    const vmProcess = holder(stale)
    const switchProcess = holder(stale)
    children.push(vmProcess, switchProcess)
    await writeFile(join(stale, 'vm-1', 'qemu.pid'), String(vmProcess.pid))
    await mkdir(join(stale, 'net-1'))
    await writeFile(join(stale, 'net-1', 'vde.pid'), String(switchProcess.pid))

    const report = await sweepStaleRuns(root)

    expect(report.processesKilled.sort()).toEqual([vmProcess.pid, switchProcess.pid].sort())
    await exitOf(switchProcess)
    expect(processIsAlive(switchProcess.pid!)).toBe(false)
    expect(existsSync(stale)).toBe(false)
  })

  it('never kills a recycled pid: the process must name the run on its command line', async () => {
    root = await mkdtemp(join(tmpdir(), 'sweep-test-'))
    const deadOwner = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    await exitOf(deadOwner)
    const stale = await fakeRun('run-stale', deadOwner.pid!)
    const stranger = holder('/somewhere/else')
    children.push(stranger)
    await writeFile(join(stale, 'vm-1', 'qemu.pid'), String(stranger.pid))

    const report = await sweepStaleRuns(root)

    expect(report.processesKilled).toEqual([])
    expect(processIsAlive(stranger.pid!)).toBe(true)
    expect(existsSync(stale)).toBe(false)
  })
})
