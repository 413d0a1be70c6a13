import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { useTemporaryCache } from '../helpers/temporary-cache.js'

interface JsonReport {
  numTotalTests: number
  numPassedTests: number
  numFailedTests: number
  testResults: { name: string; assertionResults: { fullName: string; status: string }[] }[]
}

// Two example suites and three suites sharing one golden machine (test/suites/machine.ts), one of
// whose tests fails on purpose: whichever way vitest splits the five files, both shards need the
// tiny image and that golden snapshot.
const files = '{examples/tiny-vm.test.ts,examples/clean-state.test.ts,test/suites/failing.suite.ts,test/suites/worker-a.suite.ts,test/suites/worker-b.suite.ts}'
const suiteKey = `shards-${randomBytes(6).toString('hex')}`
let out: string

function vitest(args: string[], env: Record<string, string> = {}) {
  return execa('npx', ['vitest', ...args, '--config', 'test/suites/vitest.config.ts'], {
    reject: false,
    all: true,
    env: { SUITE_FILES: files, SUITE_KEY: suiteKey, FORCE_COLOR: '0', ...env },
  })
}

/** Each test's outcome, by file and name: what a merged report must agree with one run on. */
function outcomes(report: JsonReport): string[] {
  return report.testResults.flatMap((file) => file.assertionResults.map((test) => `${file.name} > ${test.fullName}: ${test.status}`)).sort()
}

function occurrences(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern.source, 'g'))?.length ?? 0
}

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'vmharness-shards-'))
})

afterAll(async () => {
  await rm(out, { recursive: true, force: true })
})

describe('a suite split into shards, merged into one report', () => {
  // A cache of its own, empty: the two shards start together and both need every entry.
  useTemporaryCache('file')

  it('two shards at once on one machine and cache build each entry once, and merge to the counts of one run with the failed test’s machine report', async () => {
    const blobs = join(out, 'blobs')
    const shard = (index: number) => vitest(['run', `--shard=${index}/2`, '--reporter=default', '--reporter=blob', `--outputFile.blob=${join(blobs, `blob-${index}-2.json`)}`])
    const shards = await Promise.all([shard(1), shard(2)])
    const shardOutput = shards.map((result) => result.all ?? '').join('\n')
    // The deliberate failure is in one shard only; the other passes.
    expect(shards.map((result) => result.exitCode).sort(), shardOutput).toEqual([0, 1])
    expect(occurrences(shardOutput, /building the tiny image/), shardOutput).toBe(1)
    expect(occurrences(shardOutput, /golden snapshot for 'box': booting and running setup/), shardOutput).toBe(1)

    const failures = join(out, 'failures')
    const merged = await vitest(['--merge-reports', blobs, '--reporter=json', `--outputFile.json=${join(out, 'merged.json')}`, '--reporter=vmharness/vitest/reporter'], { VMHARNESS_FAILURE_DIR: failures })
    expect(merged.exitCode, merged.all).toBe(1)
    expect(merged.all).toMatch(/vmharness: machine reports of 1 failed test written to /)

    const single = await vitest(['run', '--reporter=json', `--outputFile.json=${join(out, 'single.json')}`])
    const [mergedReport, singleReport] = await Promise.all(['merged.json', 'single.json'].map(async (name) => JSON.parse(await readFile(join(out, name), 'utf8')) as JsonReport))
    expect(singleReport.numFailedTests, single.all).toBe(1)
    expect([mergedReport.numTotalTests, mergedReport.numPassedTests, mergedReport.numFailedTests]).toEqual([singleReport.numTotalTests, singleReport.numPassedTests, singleReport.numFailedTests])
    expect(outcomes(mergedReport)).toEqual(outcomes(singleReport))

    // The failed test's machine report, printed to its shard's stderr, is also in the merged report.
    const [reportFile, ...others] = await readdir(failures)
    expect(others).toEqual([])
    expect(reportFile).toMatch(/^test-suites-failing\.suite\.ts--fails-on-purpose-after-running-commands\.vmharness\.txt$/)
    const report = await readFile(join(failures, reportFile ?? ''), 'utf8')
    expect(report).toContain("vmharness: machine 'box' when the test failed")
    expect(report).toMatch(/\[exit 0, \d+ ms\] echo marker-before-failure/)
    expect(report).toMatch(/\[exit 3, \d+ ms\] exit 3/)
    expect(report).toContain('serial console, last 40 lines:')
    expect(report).toContain('VMHARNESS_READY')
  })
})
