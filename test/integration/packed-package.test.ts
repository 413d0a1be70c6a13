import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

interface JsonReport {
  numPassedTests: number
  numFailedTests: number
  numTotalTests: number
  testResults: { name: string }[]
}

const repo = process.cwd()
let scratch: string

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'vmharness-packed-'))
})

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true })
})

/** Newest modification time of the files `npm run build` compiles. */
async function newestSource(): Promise<number> {
  let newest = 0
  for (const dir of ['src', 'fixtures']) {
    for (const entry of await readdir(join(repo, dir), { recursive: true })) {
      if (entry.endsWith('.ts')) newest = Math.max(newest, (await stat(join(repo, dir, entry))).mtimeMs)
    }
  }
  return newest
}

/** `npm pack` of this checkout; the build (npm's `prepare`) runs only when dist is older than the sources. */
async function pack(): Promise<string> {
  const built = await Promise.all(['dist/src/index.js', 'dist/fixtures/index.js'].map((file) => stat(join(repo, file)).then((info) => info.mtimeMs, () => 0)))
  if (Math.min(...built) < (await newestSource())) await execa('npm', ['run', 'build'], { cwd: repo })
  const { stdout } = await execa('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], { cwd: repo })
  const [packed] = JSON.parse(stdout) as { filename: string }[]
  return join(scratch, packed?.filename ?? '')
}

describe('the packed package, installed the way a user installs it', () => {
  it('a fresh project that installed the tarball runs a suite importing only vmharness and vmharness/vitest (with its reporter)', async () => {
    const tarball = await pack()
    const project = join(scratch, 'project')
    await mkdir(project)
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }))
    const vitestVersion = (JSON.parse(await readFile(join(repo, 'node_modules/vitest/package.json'), 'utf8')) as { version: string }).version
    // From npm's cache when it can; no install scripts (ssh2's optional native cpu-features build is slow and not needed).
    await execa('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error', tarball, `vitest@${vitestVersion}`], { cwd: project })
    // A real install, not a link back into this checkout.
    expect((await lstat(join(project, 'node_modules/vmharness'))).isDirectory()).toBe(true)
    for (const file of ['example.test.ts', 'vitest.config.js']) await copyFile(join(repo, 'test/packed', file), join(project, file))

    const reportFile = join(scratch, 'report.json')
    const result = await execa(join(project, 'node_modules/.bin/vitest'), ['run', '--reporter', 'json', '--outputFile', reportFile, '--reporter', 'vmharness/vitest/reporter'], {
      cwd: project,
      reject: false,
      all: true,
      // Its own cache: the tiny image and the golden snapshot are built from the packed files, then thrown away.
      env: { VMHARNESS_CACHE: join(scratch, 'cache'), FORCE_COLOR: '0' },
    })
    const report = JSON.parse(await readFile(reportFile, 'utf8').catch(() => '{}')) as Partial<JsonReport>
    expect(report.numFailedTests, result.all?.slice(-4000)).toBe(0)
    expect(report.numPassedTests, result.all?.slice(-4000)).toBe(3)
    expect(report.testResults?.map((file) => file.name)).toEqual([join(project, 'example.test.ts')])
  }, 300_000)
})
