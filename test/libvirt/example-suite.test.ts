import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { beforeEach, expect, it } from 'vitest'
import { skipBecause } from '../helpers/skip.js'
import { sandboxMissing } from '../helpers/libvirt-sandbox.js'

beforeEach((context) => {
  if (sandboxMissing) skipBecause(context, sandboxMissing)
})

/** The domains the sandbox's daemon has run so far: it keeps a log file per domain. */
async function domainLogs(): Promise<string[]> {
  return (await readdir('/var/log/libvirt/qemu').catch(() => [] as string[])).filter((name) => /^vmh-.*\.log$/.test(name))
}

it('the example suites run unchanged with VMHARNESS_BACKEND=libvirt, their VMs as libvirt domains', async () => {
  const before = new Set(await domainLogs())
  const dir = await mkdtemp(join(tmpdir(), 'vmharness-example-'))
  try {
    const report = join(dir, 'report.json')
    const run = await execa(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--config', 'examples/vitest.config.ts', 'examples/tiny-vm.test.ts', 'examples/clean-state.test.ts', '--reporter=verbose', '--reporter=json', `--outputFile.json=${report}`], {
      env: { VMHARNESS_BACKEND: 'libvirt' },
      reject: false,
      all: true,
    })
    const result = JSON.parse(await readFile(report, 'utf8')) as { numPassedTests: number; numFailedTests: number; numTotalTests: number }
    expect({ exitCode: run.exitCode, failed: result.numFailedTests, output: result.numFailedTests ? run.all : '' }).toMatchObject({ exitCode: 0, failed: 0 })
    expect(result.numPassedTests).toBe(result.numTotalTests)
    expect(result.numPassedTests).toBeGreaterThanOrEqual(7)
    expect(run.all).toContain('(libvirt)')
    // The tiny VM, and the clean-state machine's golden boot and its clones, all ran as domains.
    const fresh = (await domainLogs()).filter((name) => !before.has(name))
    expect(fresh.length).toBeGreaterThanOrEqual(2)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
