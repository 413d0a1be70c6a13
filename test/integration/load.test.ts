import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, describe, expect, it } from 'vitest'
import { cacheRoot } from '../../src/host/cache-dir.js'
import { readSavedState } from '../../src/hypervisor/qemu/saved-state.js'

const suiteKey = `load-${randomBytes(6).toString('hex')}`
const testsPerFile = 50
let out = ''

async function goldenEntriesOfThisRun(): Promise<string[]> {
  const root = join(cacheRoot(), 'golden')
  const found: string[] = []
  for (const entry of await readdir(root)) {
    const record = await readFile(join(root, entry, 'golden.json'), 'utf8').catch(() => '')
    if (record.includes(suiteKey)) found.push(join(root, entry))
  }
  return found
}

afterAll(async () => {
  for (const dir of await goldenEntriesOfThisRun()) await rm(dir, { recursive: true, force: true })
  if (out) await rm(out, { recursive: true, force: true })
})

describe('load', () => {
  it(`4 vitest workers x ${testsPerFile} tests with rollback at once: all clean, no port clash, one intact golden entry`, async () => {
    out = await mkdtemp(join(tmpdir(), 'vmharness-load-'))
    const reportFile = join(out, 'report.json')
    const result = await execa('npx', ['vitest', 'run', '--config', 'test/suites/vitest.config.ts', '--maxWorkers', '4', '--reporter', 'json', '--outputFile', reportFile], {
      reject: false,
      all: true,
      env: { SUITE_FILES: 'test/suites/load-*.suite.ts', SUITE_OUT: out, SUITE_KEY: suiteKey, LOAD_TESTS: String(testsPerFile), FORCE_COLOR: '0' },
    })
    const report = JSON.parse(await readFile(reportFile, 'utf8')) as { numPassedTests: number; numFailedTests: number }
    const output = result.all ?? ''
    expect(report.numFailedTests, output.slice(-4000)).toBe(0)
    expect(report.numPassedTests).toBe(4 * testsPerFile)
    const records = (await readFile(join(out, 'load.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { file: string; port: number; pid: number })
    expect(records).toHaveLength(4 * testsPerFile)
    // A VM reached through another VM's port would have failed its pinned host key check, and so its test.
    // A port taken between choosing it and QEMU binding it is retried, and the worker says so on its
    // stderr, which reaches this output (checked with a suite that writes the same line).
    const retried = output.match(/was taken before QEMU could bind it/g)?.length ?? 0
    process.stdout.write(`[load] ${records.length} tests, ${new Set(records.map((r) => r.pid)).size} VMs, ${new Set(records.map((r) => r.port)).size} ports, ${retried} port retries, vitest ${(result.durationMs / 1000).toFixed(0)} s\n`)
    expect(retried, 'port retries (the README says 0)').toBe(0)
    const golden = await goldenEntriesOfThisRun()
    expect(golden).toHaveLength(1)
    await expect(readSavedState(join(golden[0] as string, 'snapshot'))).resolves.toBeTruthy()
  }, 1_200_000)
})
