import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cacheRoot } from '../../src/host/cache-dir.js'
import { processRunning, qemuProcessesMentioning } from '../helpers/host-state.js'

interface JsonReport {
  numPassedTests: number
  numFailedTests: number
  testResults: { assertionResults: { title: string; status: string; failureMessages: string[] }[] }[]
}

let out: string
const suiteKey = `suite-${randomBytes(6).toString('hex')}`

/** Runs test/suites in a vitest of its own, the way a user's run would go. */
async function runSuite(files: string, maxWorkers: number, env: Record<string, string> = {}) {
  const run = randomBytes(3).toString('hex')
  const reportFile = join(out, `report-${run}.json`)
  const failureDir = join(out, `failures-${run}`)
  const result = await execa('npx', ['vitest', 'run', '--config', 'test/suites/vitest.config.ts', '--maxWorkers', String(maxWorkers), '--reporter', 'json', '--outputFile', reportFile, '--reporter', 'vmharness/vitest/reporter'], {
    reject: false,
    env: { SUITE_FILES: files, SUITE_OUT: out, SUITE_KEY: suiteKey, FORCE_COLOR: '0', VMHARNESS_FAILURE_DIR: failureDir, ...env },
    all: true,
  })
  const report = JSON.parse(await readFile(reportFile, 'utf8')) as JsonReport
  // What vmharness/vitest/reporter wrote: one file per failed test.
  const failureFiles = await Promise.all((await readdir(failureDir).catch(() => [] as string[])).map((name) => readFile(join(failureDir, name), 'utf8')))
  return { result, report, failureFiles }
}

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'vmharness-suite-'))
})

afterAll(async () => {
  await rm(out, { recursive: true, force: true })
  // The golden entries this file's suites built (keyed by suiteKey) are of no use to anyone after it.
  const goldenRoot = join(cacheRoot(), 'golden')
  for (const entry of await readdir(goldenRoot)) {
    const record = await readFile(join(goldenRoot, entry, 'golden.json'), 'utf8').catch(() => '')
    if (record.includes(suiteKey)) await rm(join(goldenRoot, entry), { recursive: true, force: true })
  }
})

describe('vmTest fixtures in a real vitest run', () => {
  it('two workers each get their own VMs, cloned from one golden snapshot', async () => {
    const { result, report } = await runSuite('test/suites/worker-*.suite.ts', 2)
    expect(report.numFailedTests, result.all).toBe(0)
    expect(report.numPassedTests).toBe(4)
    const notes = (await readFile(join(out, 'workers.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { file: string; pool: string; pid: number })
    expect(notes.map((n) => n.file).sort()).toEqual(['a', 'b'])
    expect(new Set(notes.map((n) => n.pool)).size).toBe(2)
    expect(new Set(notes.map((n) => n.pid)).size).toBe(2)
  })

  it('a failed test shows the commands it ran and the console tail', async () => {
    const { result, report } = await runSuite('test/suites/failing.suite.ts', 1)
    expect(report.numFailedTests).toBe(1)
    expect(result.exitCode).not.toBe(0)
    const output = result.all ?? ''
    expect(output).toContain("vmharness: machine 'box' when the test failed")
    expect(output).toMatch(/\[exit 0, \d+ ms\] echo marker-before-failure/)
    expect(output).toMatch(/\[exit 3, \d+ ms\] exit 3/)
    expect(output).toMatch(/\[exit 0, \d+ ms\] cat \/root\/state/)
    expect(output).toContain('serial console, last 40 lines:')
    expect(output).toContain('VMHARNESS_READY')
  })

  it('two workers each run a group with the same addresses at once, and neither reaches the other', async () => {
    const { result, report } = await runSuite('test/suites/group-[ab].suite.ts', 2)
    expect(report.numFailedTests, result.all).toBe(0)
    expect(report.numPassedTests).toBe(2)
    const notes = (await readFile(join(out, 'groups.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { file: string; pool: string; pid: number; switchSocket: string; addresses: string[] })
    expect(notes.map((n) => n.file).sort()).toEqual(['a', 'b'])
    expect(new Set(notes.map((n) => n.pool)).size).toBe(2)
    expect(new Set(notes.map((n) => n.pid)).size).toBe(2)
    expect(new Set(notes.map((n) => n.switchSocket)).size).toBe(2)
    for (const note of notes) expect(note.addresses).toEqual(['192.168.1.1', '192.168.1.2'])
  })

  it("a failed group test shows each member's commands and console tail, and the topology", async () => {
    const { result, report } = await runSuite('test/suites/group-failing.suite.ts', 1)
    expect(report.numFailedTests).toBe(1)
    expect(result.exitCode).not.toBe(0)
    const output = result.all ?? ''
    const serverStart = output.indexOf("vmharness: machine 'server' when the test failed")
    const clientStart = output.indexOf("vmharness: machine 'client' when the test failed")
    const topologyStart = output.indexOf('topology:', clientStart)
    expect([serverStart, clientStart, topologyStart].every((at) => at >= 0), output).toBe(true)
    const serverPart = output.slice(serverStart, clientStart)
    const clientPart = output.slice(clientStart, topologyStart)
    expect(serverPart).toMatch(/\[exit 0, \d+ ms\] echo server-before-failure/)
    expect(serverPart).not.toContain('client-before-failure')
    expect(clientPart).toMatch(/\[exit 0, \d+ ms\] echo client-before-failure/)
    expect(clientPart).toMatch(/\[exit 4, \d+ ms\] exit 4/)
    expect(clientPart).toMatch(/\[exit 0, \d+ ms\] hostname/)
    for (const part of [serverPart, clientPart]) {
      expect(part).toContain('serial console, last 40 lines:')
      expect(part).toContain('VMHARNESS_READY')
    }
    // The addresses and MACs the report gives are the ones the guests showed.
    const observed = JSON.parse(await readFile(join(out, 'observed-lan.json'), 'utf8')) as Record<string, { mac: string; ipv4: string; ipv6: string }>
    expect(output.slice(topologyStart)).toContain("network 'lan' (192.168.1.0/24, 2001:db8:1::/64):")
    for (const [name, number] of [['server', 1], ['client', 2]] as const) {
      const { mac, ipv4, ipv6 } = observed[name] ?? { mac: '', ipv4: '', ipv6: '' }
      expect([ipv4, ipv6]).toEqual([`192.168.1.${number}`, `2001:db8:1::${number}`])
      expect(output.slice(topologyStart)).toContain(`    ${name}: ${ipv4}, ${ipv6} (mac ${mac})`)
    }
  })

  it('a switch that dies mid-test fails that test with a NetworkError naming the network, and the next test gets a whole group', async () => {
    const { result, report } = await runSuite('test/suites/group-switch-dies.suite.ts', 1)
    const [killed, next] = report.testResults[0]?.assertionResults ?? []
    expect(killed?.status, result.all).toBe('failed')
    expect(killed?.failureMessages.join('\n')).toMatch(/NetworkError: network 'lan': its vde_switch has died \(signal SIGKILL\)/)
    // Reported once (a throwing fixture cleanup would be reported twice by vitest 4.1).
    expect(killed?.failureMessages).toHaveLength(1)
    expect(next?.status, next?.failureMessages.join('\n')).toBe('passed')
  })

  it('VMHARNESS_KEEP=on-failure leaves the failed VM running for vmharness ssh, and only that one', async () => {
    const runRoot = join(out, 'keep-runs')
    const env = { VMHARNESS_RUN_ROOT: runRoot }
    const { result, report, failureFiles } = await runSuite('test/suites/failing.suite.ts', 1, { ...env, VMHARNESS_KEEP: 'on-failure' })
    expect(report.numFailedTests).toBe(1)
    expect(result.all).toMatch(/vmharness: kept 'box' \([0-9a-f]+\) running for debugging: fails on purpose/)
    expect(result.all).toContain('npx vmharness ssh box')
    // The notice is a test artifact too, so a merged report of shards still has it.
    expect(failureFiles).toHaveLength(1)
    expect(failureFiles[0]).toContain("vmharness: machine 'box' when the test failed")
    expect(failureFiles[0]).toMatch(/vmharness: kept 'box' \([0-9a-f]+\) running for debugging: fails on purpose/)
    const cli = (...args: string[]) => execa('node', ['dist/src/cli/main.js', ...args], { env, reject: false })
    const listed = await cli('kept')
    expect(listed.stdout).toContain("kept 'box'")
    // The same VM, in the state the failed test left: its file is there, reached through the OpenSSH client.
    const shell = await cli('ssh', 'box', 'cat /tmp/evidence')
    expect(shell.stdout, shell.stderr).toBe('left by the failing test')
    const kept = JSON.parse(await readFile(join(runRoot, 'kept', (await readdir(join(runRoot, 'kept')))[0] ?? '', 'kept.json'), 'utf8')) as { pid: number; dir: string }
    // Every other VM of that run died with it.
    expect(await qemuProcessesMentioning(runRoot)).toEqual([kept.pid])
    expect((await cli('kept', '--stop', 'box')).stdout).toContain('stopped box')
    await waitUntilGone(kept.pid)
    expect(await processRunning(kept.pid)).toBe(false)
    expect(await readdir(join(runRoot, 'kept'))).toEqual([])
  })
})

async function waitUntilGone(pid: number): Promise<void> {
  for (let i = 0; i < 50 && (await processRunning(pid)); i++) await new Promise((resolve) => setTimeout(resolve, 100))
}
