// A suite of state-mutating tests run several ways on the tiny guest: a reboot per test, rollback
// per test (internal snapshot, external snapshot, warm pools) and one shared VM with no isolation.
// Modes take turns in chunks of tests, so the machine's noise falls on all of them alike.
import { availableParallelism } from 'node:os'
import { QemuHypervisor } from '../src/hypervisor/qemu/qemu-hypervisor.js'
import { CleanMachine, type MachineConfig } from '../src/machine/clean-machine.js'
import { defaultPoolSize } from '../src/machine/pool-size.js'
import type { StartOptions, Vm } from '../src/machine/vm.js'
import { median } from './stats.js'

const testCount = Number(process.env.BENCH_TESTS ?? 50)
const chunk = Number(process.env.BENCH_CHUNK ?? 10)

interface Mode {
  config: Partial<MachineConfig>
  options?: StartOptions
}

const allModes: Record<string, Mode> = {
  'reboot per test': { config: { rollback: 'reboot' } },
  'rollback, internal snapshot, no pool': { config: { rollback: 'snapshot', pool: 0, snapshotKind: 'internal' } },
  // What the line above cost before disks used io_uring: the same rollback, QEMU's thread pool for disk I/O.
  'rollback, internal snapshot, no pool, thread-pool disk I/O': { config: { rollback: 'snapshot', pool: 0, snapshotKind: 'internal' }, options: { hypervisor: new QemuHypervisor({ diskIo: 'threads' }) } },
  'rollback, external snapshot, no pool': { config: { rollback: 'snapshot', pool: 0, snapshotKind: 'external' } },
  'rollback, warm pool of 1': { config: { rollback: 'snapshot', pool: 1 } },
  'rollback, warm pool of 2': { config: { rollback: 'snapshot', pool: 2 } },
  // The pool as it was first built: a fresh clone for every test instead of reloading used VMs.
  'rollback, warm pool of 2, fresh clones': { config: { rollback: 'snapshot', pool: 2, snapshotKind: 'external' } },
  'one shared VM, no isolation': { config: { rollback: 'none' } },
}
// BENCH_MODES (a regular expression) runs some of them only: the summary lines need all the modes.
const modes = Object.fromEntries(Object.entries(allModes).filter(([name]) => new RegExp(process.env.BENCH_MODES ?? '.').test(name)))

interface Tally {
  machine: CleanMachine
  /** acquire + release per test: what isolation costs a test. */
  overheadMs: number[]
  bodyMs: number[]
  totalMs: number
}

/** Checks what the previous test may have left, then leaves marks of its own: disk, tmpfs, a process, a sysctl. */
async function stateMutatingTest(vm: Vm, isolated: boolean): Promise<void> {
  const seen = await vm.exec('cat /root/state; test -e /tmp/mark && echo dirty-tmp; sysctl -n net.ipv4.ip_forward')
  if (isolated && seen.stdout !== 'golden\n0\n') throw new Error(`test did not start clean: ${JSON.stringify(seen.stdout)}`)
  await vm.succeed('echo dirty > /root/state; touch /tmp/mark; sysctl -qw net.ipv4.ip_forward=1; (sleep 600 >/dev/null 2>&1 &)')
}

async function runTest(name: string, tally: Tally): Promise<void> {
  const started = performance.now()
  const vm = await tally.machine.acquire()
  const bodyStarted = performance.now()
  await stateMutatingTest(vm, name !== 'one shared VM, no isolation')
  const bodyEnded = performance.now()
  tally.machine.release(vm)
  const ended = performance.now()
  tally.overheadMs.push(bodyStarted - started + (ended - bodyEnded))
  tally.bodyMs.push(bodyEnded - bodyStarted)
  tally.totalMs += ended - started
}

async function main(): Promise<void> {
  const setup = async (vm: Vm) => {
    await vm.succeed('echo golden > /root/state')
  }
  const tallies = new Map<string, Tally>()
  for (const [name, mode] of Object.entries(modes)) {
    const machine = new CleanMachine('bench', { image: 'tiny', setup, setupKey: 'bench-clean-state', ...mode.config }, mode.options)
    tallies.set(name, { machine, overheadMs: [], bodyMs: [], totalMs: 0 })
  }
  // The golden snapshot is built (or found) before timing: every mode starts from it alike.
  const warm = new CleanMachine('bench', { image: 'tiny', setup, setupKey: 'bench-clean-state', pool: 0 })
  await warm.acquire()
  await warm.close()
  try {
    for (let done = 0; done < testCount; done += chunk) {
      for (const [name, tally] of tallies) {
        for (let i = done; i < Math.min(testCount, done + chunk); i++) await runTest(name, tally)
      }
      process.stderr.write(`bench: ${Math.min(testCount, done + chunk)}/${testCount} tests in each mode\n`)
    }
  } finally {
    await Promise.all([...tallies.values()].map((tally) => tally.machine.close()))
  }
  report(tallies)
}

function report(tallies: Map<string, Tally>): void {
  printTable(tallies)
  if (tallies.size === Object.keys(allModes).length) printRatios(tallies)
}

function printTable(tallies: Map<string, Tally>): void {
  const seconds = (ms: number) => (ms / 1000).toFixed(2)
  const get = (name: string) => tallies.get(name) as Tally
  console.log(`\n${testCount} state-mutating tests per mode (TCG, tiny guest); per-test overhead = acquire + release, first test excluded\n`)
  console.log('| mode | total | per-test overhead, median | test body, median |')
  console.log('|---|---|---|---|')
  for (const [name, tally] of tallies) {
    console.log(`| ${name} | ${seconds(tally.totalMs)} s | ${seconds(median(tally.overheadMs.slice(1)))} s | ${seconds(median(tally.bodyMs))} s |`)
  }
}

function printRatios(tallies: Map<string, Tally>): void {
  const seconds = (ms: number) => (ms / 1000).toFixed(2)
  const get = (name: string) => tallies.get(name) as Tally
  const reboot = get('reboot per test').totalMs
  const poolSize = defaultPoolSize({ cores: availableParallelism(), accel: 'tcg', guestCpus: 1 })
  const defaultPool = `rollback, warm pool of ${poolSize}`
  const pool = get(defaultPool).totalMs
  const shared = get('one shared VM, no isolation').totalMs
  const internal = get('rollback, internal snapshot, no pool')
  const threaded = get('rollback, internal snapshot, no pool, thread-pool disk I/O')
  const external = get('rollback, external snapshot, no pool')
  const clones = get('rollback, warm pool of 2, fresh clones')
  console.log('')
  console.log(`with the default pool (${poolSize}):`)
  console.log(`reboot per test / warm pool: ${(reboot / pool).toFixed(1)}x faster (goal >= 20x)`)
  console.log(`warm pool / no isolation: ${(pool / shared).toFixed(2)}x (goal <= 1.2x)`)
  console.log(`per-test overhead with the pool, median: ${seconds(median(get(defaultPool).overheadMs.slice(1)))} s (goal <= 0.10 s)`)
  console.log(`restore -> SSH without the pool, median: internal ${seconds(median(internal.overheadMs.slice(1)))} s, external ${seconds(median(external.overheadMs.slice(1)))} s (goal <= 0.5 s)`)
  console.log(`internal restore, io_uring / thread-pool disk I/O: ${(median(internal.overheadMs.slice(1)) / median(threaded.overheadMs.slice(1))).toFixed(2)} (overhead medians)`)
  console.log(`warm pool of 2, reloading used VMs / fresh clones: ${(pool / clones.totalMs).toFixed(2)} (totals)`)
}

await main()
