import { randomBytes } from 'node:crypto'
import { cp, mkdtemp, readdir, readFile, rm, truncate, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// A CI cache step saves the cache directory and restores it on another runner, at another path
// and with other mtimes. These runs use caches of their own, never the shared one.
let work: string
const suiteKey = `cache-ci-${randomBytes(6).toString('hex')}`

async function runSuite(cache: string) {
  const report = join(work, `report-${randomBytes(3).toString('hex')}.json`)
  const result = await execa('npx', ['vitest', 'run', '--config', 'test/suites/vitest.config.ts', '--reporter', 'json', '--outputFile', report], {
    reject: false,
    env: { SUITE_FILES: 'test/suites/cache-ci.suite.ts', SUITE_KEY: suiteKey, VMHARNESS_CACHE: cache, VMHARNESS_PROGRESS: '1', FORCE_COLOR: '0' },
    all: true,
  })
  const passed = (JSON.parse(await readFile(report, 'utf8')) as { numPassedTests: number }).numPassedTests
  return { output: result.all ?? '', exitCode: result.exitCode, passed }
}

async function touchAll(dir: string, when: Date): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) await utimes(join(entry.parentPath, entry.name), when, when)
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vmharness-cache-ci-'))
})

afterAll(async () => {
  await rm(work, { recursive: true, force: true })
})

describe('a cache moved as a CI cache step moves it', () => {
  it('is used at its new path as it is (no build, no boot), and a truncated snapshot in it is rebuilt', async () => {
    const first = join(work, 'first')
    const warm = await runSuite(first)
    expect(warm.output).toContain('building the tiny image')
    expect(warm.output).toContain("golden snapshot for 'box': booting and running setup")
    expect(warm.passed, warm.output).toBe(1)

    // Restored elsewhere: another path, every mtime changed, the original gone (so no path into it can work).
    const restored = join(work, 'restored', 'vmharness')
    await cp(first, restored, { recursive: true, preserveTimestamps: true })
    await rm(first, { recursive: true, force: true })
    await touchAll(restored, new Date(Date.now() - 3_600_000))
    const moved = await runSuite(restored)
    expect(moved.passed, moved.output).toBe(1)
    expect(moved.output).not.toContain('building the tiny image')
    expect(moved.output).not.toContain('booting and running setup')
    expect(moved.output).not.toContain('unusable')

    // Half restored: the golden RAM state cut short.
    const [golden] = await readdir(join(restored, 'golden'))
    const state = join(restored, 'golden', golden as string, 'snapshot', 'state.bin')
    await truncate(state, 4096)
    const damaged = await runSuite(restored)
    expect(damaged.passed, damaged.output).toBe(1)
    expect(damaged.output).toMatch(/golden snapshot \w+ is unusable \(.*state\.bin .* is 4096 bytes, expected \d+/)
    expect(damaged.output).toContain("golden snapshot for 'box': booting and running setup")
    expect(damaged.output).not.toContain('building the tiny image')
  })
})
