import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { processIsAlive } from '../../src/host/process-alive.js'
import { runsRoot, sweepStaleRuns } from '../../src/host/run-dir.js'
import { processRunning, qemuProcessesMentioning, vdeSwitchesMentioning } from '../helpers/host-state.js'

let out: string

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'vmharness-killed-'))
})
afterAll(async () => {
  await rm(out, { recursive: true, force: true })
})

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined || Date.now() > deadline) return value
    await sleep(50)
  }
}

it('a vitest run killed with SIGKILL mid-test leaves no QEMU after 2 s, and its port and files are reclaimed', async () => {
  // One golden snapshot for this test, reused from run to run (a fresh key per run would pile them up in the cache).
  // The vitest process itself, not npx: that is the process a CI timeout or an OOM kill hits.
  const run = execa(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--config', 'test/suites/vitest.config.ts'], {
    reject: false,
    env: { SUITE_FILES: 'test/suites/killed.suite.ts', SUITE_OUT: out, SUITE_KEY: 'killed-run' },
  })
  const running = await waitFor(async () => {
    const text = await readFile(join(out, 'running.json'), 'utf8').catch(() => '')
    return text ? (JSON.parse(text) as { qemuPid: number; port: number; worker: number }) : undefined
  }, 150_000)
  expect(running, 'the suite never reached its test').toBeDefined()
  if (!running) return
  expect(processIsAlive(running.qemuPid)).toBe(true)
  const killedAt = Date.now()
  run.kill('SIGKILL')
  const gone = await waitFor(async () => ((await processRunning(running.qemuPid)) ? undefined : Date.now() - killedAt), 10_000)
  await run
  expect(gone, 'QEMU outlived its run').toBeDefined()
  expect(gone).toBeLessThanOrEqual(2_000)
  process.stderr.write(`QEMU dead ${gone} ms after the run was killed\n`)
  await waitFor(async () => (processIsAlive(running.worker) ? undefined : true), 5_000)
  await sweepStaleRuns()
  expect(await qemuProcessesMentioning(runsRoot())).not.toContain(running.qemuPid)
  expect((await readdir(runsRoot())).filter((entry) => entry.startsWith(`run-${running.worker}-`))).toEqual([])
  await new Promise<void>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(running.port, '127.0.0.1', () => server.close(() => resolve()))
  })
})

it('a vitest run killed with SIGKILL while a group test runs leaves neither QEMU nor vde_switch, and the sweep removes its run directory', async () => {
  const run = execa(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--config', 'test/suites/vitest.config.ts'], {
    reject: false,
    env: { SUITE_FILES: 'test/suites/killed-group.suite.ts', SUITE_OUT: out },
  })
  const running = await waitFor(async () => {
    const text = await readFile(join(out, 'running-group.json'), 'utf8').catch(() => '')
    return text ? (JSON.parse(text) as { qemuPids: number[]; switchSocket: string; runDir: string; worker: number }) : undefined
  }, 150_000)
  expect(running, 'the suite never reached its test').toBeDefined()
  if (!running) return
  expect(await qemuProcessesMentioning(running.runDir)).toEqual(expect.arrayContaining(running.qemuPids))
  expect(await vdeSwitchesMentioning(running.switchSocket)).toHaveLength(1)
  const killedAt = Date.now()
  run.kill('SIGKILL')
  const leftOver = async () => [...(await qemuProcessesMentioning(running.runDir)), ...(await vdeSwitchesMentioning(running.runDir))]
  const gone = await waitFor(async () => ((await leftOver()).length > 0 ? undefined : Date.now() - killedAt), 10_000)
  await run
  expect(gone, `left running: ${(await leftOver()).join(', ')}`).toBeDefined()
  expect(gone).toBeLessThanOrEqual(3_000)
  process.stderr.write(`QEMU and vde_switch dead ${gone} ms after the run was killed\n`)
  await waitFor(async () => (processIsAlive(running.worker) ? undefined : true), 5_000)
  await sweepStaleRuns()
  expect(existsSync(running.runDir)).toBe(false)
})
