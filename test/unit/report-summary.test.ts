import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

let out: string

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'vmharness-summary-'))
})

afterAll(async () => {
  await rm(out, { recursive: true, force: true })
})

describe('.ci/report-summary.mjs', () => {
  it("names each skipped test with its reason, then counts passed, failed and skipped, from a real vitest run's JSON report", async () => {
    const reportFile = join(out, 'report.json')
    await execa('npx', ['vitest', 'run', '--config', 'test/suites/plain.vitest.config.ts', '--reporter', 'json', '--outputFile', reportFile], { reject: false, env: { FORCE_COLOR: '0' } })
    const summary = await execa('node', ['.ci/report-summary.mjs', reportFile], { reject: false })
    expect(summary.stdout.split('\n')).toEqual([
      'skipped: test/suites/skips.suite.ts > skips itself with a reason: needs a thing this host lacks: install it',
      'skipped: test/suites/skips.suite.ts > is marked skip: no reason recorded (marked .skip, or skipped without skipBecause)',
      '1 passed, 1 failed, 2 skipped',
    ])
    expect(summary.exitCode).toBe(1)
  }, 60_000)

  it('adds up several reports (one per Node version), naming the later ones on their skips, and counts a missing one as failed', async () => {
    const reportFile = join(out, 'report.json')
    await execa('npx', ['vitest', 'run', '--config', 'test/suites/plain.vitest.config.ts', '--reporter', 'json', '--outputFile', reportFile], { reject: false, env: { FORCE_COLOR: '0' } })
    const summary = await execa('node', ['.ci/report-summary.mjs', reportFile, reportFile, join(out, 'none.json')], { reject: false })
    const lines = summary.stdout.split('\n')
    expect(lines.filter((line) => line.startsWith(`skipped: [${reportFile}] `))).toHaveLength(2)
    expect(lines.at(-1)).toBe('2 passed, 3 failed, 4 skipped')
    expect(summary.exitCode).toBe(1)
  }, 60_000)

  it('counts a missing report as a failure', async () => {
    const summary = await execa('node', ['.ci/report-summary.mjs', join(out, 'none.json')], { reject: false })
    expect(summary.stdout).toContain('0 passed, 1 failed, 0 skipped')
    expect(summary.exitCode).toBe(1)
  })
})
