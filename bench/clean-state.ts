// A suite of state-mutating tests run several ways: a reboot per test, rollback per test
// (internal snapshot, external snapshot, warm pools) and one shared VM with no isolation.
//
// Options (flag or environment variable):
//   --image tiny|debian (BENCH_IMAGE)  tiny (default): every mode, 256 MiB, 1 vCPU.
//                                      debian: the default pool against pool 0 and pool 2,
//                                      1024 MiB, 2 vCPUs.
//   --tests N (BENCH_TESTS)            tests per mode: 50 for tiny, 10 for debian.
//   --chunk N (BENCH_CHUNK)            tests per pass of one mode: 25 for tiny, 10 for debian.
//   --modes REGEX (BENCH_MODES)        some modes only (the summary lines need them all).
//
// Fair load: only one mode's machines exist at a time. A mode runs a pass of `chunk` tests on a
// CleanMachine of its own, which is closed (its VMs, pooled ones included, destroyed) before the
// next mode's pass starts; so no pool refills while another mode is being timed, which kept every
// mode's pool busy beside the others' tests before. The modes still take turns, pass by pass, in
// an order that reverses every round (A B C, C B A, ...), so that load from neighbours, which
// drifts over minutes, falls on all of them alike. Each pass's first acquire (the clone of the
// golden snapshot that any suite pays once, and then the pool starts filling) is left out of the
// totals and the overhead figure, and reported on its own. Passes are long (25 tests), because a
// pass pays the pool's filling each time, which a real suite pays once.
import { availableParallelism } from 'node:os'
import { QemuHypervisor } from '../src/hypervisor/qemu/qemu-hypervisor.js'
import { CleanMachine, type MachineConfig } from '../src/machine/clean-machine.js'
import type { StartOptions, Vm } from '../src/machine/vm.js'
import { countOption, median, stringOption } from './stats.js'

const image = stringOption('image', 'BENCH_IMAGE', 'tiny')
if (image !== 'tiny' && image !== 'debian') throw new Error(`--image must be tiny or debian, got ${image}`)
const testCount = countOption('tests', 'BENCH_TESTS', image === 'tiny' ? 50 : 10)
const chunk = countOption('chunk', 'BENCH_CHUNK', image === 'tiny' ? 25 : 10)

interface Mode {
  config: Partial<MachineConfig>
  options?: StartOptions
}

const sharedMode = 'one shared VM, no isolation'
const defaultPoolMode = 'rollback, default pool'
const noPoolMode = 'rollback, internal snapshot, no pool'

const tinyModes: Record<string, Mode> = {
  'reboot per test': { config: { rollback: 'reboot' } },
  [noPoolMode]: { config: { rollback: 'snapshot', pool: 0, snapshotKind: 'internal' } },
  // What the line above cost before disks used io_uring: the same rollback, QEMU's thread pool for disk I/O.
  'rollback, internal snapshot, no pool, thread-pool disk I/O': { config: { rollback: 'snapshot', pool: 0, snapshotKind: 'internal' }, options: { hypervisor: new QemuHypervisor({ diskIo: 'threads' }) } },
  'rollback, external snapshot, no pool': { config: { rollback: 'snapshot', pool: 0, snapshotKind: 'external' } },
  'rollback, warm pool of 1': { config: { rollback: 'snapshot', pool: 1 } },
  'rollback, warm pool of 2': { config: { rollback: 'snapshot', pool: 2 } },
  // No `pool:`: the size the host's defaults choose (cores, accelerator, vCPUs).
  [defaultPoolMode]: { config: { rollback: 'snapshot' } },
  // The pool as it was first built: a fresh clone for every test instead of reloading used VMs.
  'rollback, warm pool of 2, fresh clones': { config: { rollback: 'snapshot', pool: 2, snapshotKind: 'external' } },
  [sharedMode]: { config: { rollback: 'none' } },
}

// Measured before on 2 cores: 10 state-breaking Debian tests took 21.9 s with a pool of 2 and 18.0 s with pool: 0.
const debianModes: Record<string, Mode> = {
  [defaultPoolMode]: { config: { rollback: 'snapshot' } },
  [noPoolMode]: { config: { rollback: 'snapshot', pool: 0 } },
  'rollback, warm pool of 1': { config: { rollback: 'snapshot', pool: 1 } },
  'rollback, warm pool of 2 (the old default)': { config: { rollback: 'snapshot', pool: 2 } },
}

const allModes = image === 'tiny' ? tinyModes : debianModes
const modes = Object.entries(allModes).filter(([name]) => new RegExp(stringOption('modes', 'BENCH_MODES', '.')).test(name))
// A Debian boot (only the golden snapshot's, before timing) takes 30-35 s on a quiet 2-core host and past 120 s on a loaded one.
const machineSpec = image === 'tiny' ? { image: 'tiny' } : { image: 'debian', memory: 1024, cpus: 2, bootTimeoutMs: 360_000 }

interface Tally {
  /** acquire + release per test: what isolation costs a test. */
  overheadMs: number[]
  bodyMs: number[]
  /** Every test but each pass's first. */
  totalMs: number
  /** Each pass's first acquire: the golden clone (or boot) any suite pays once. */
  firstAcquireMs: number[]
  /** The pool size the machine ran with (the chosen default for the default mode). */
  poolSize: number | undefined
}

/** Checks what the previous test may have left, then leaves marks of its own: disk, tmpfs, a process, a sysctl. */
async function stateMutatingTest(vm: Vm, isolated: boolean): Promise<void> {
  const seen = await vm.exec('cat /root/state; test -e /tmp/mark && echo dirty-tmp; sysctl -n net.ipv4.ip_forward')
  if (isolated && seen.stdout !== 'golden\n0\n') throw new Error(`test did not start clean: ${JSON.stringify(seen.stdout)}`)
  await vm.succeed('echo dirty > /root/state; touch /tmp/mark; sysctl -qw net.ipv4.ip_forward=1; (sleep 600 >/dev/null 2>&1 &)')
}

const setup = async (vm: Vm) => {
  await vm.succeed('echo golden > /root/state')
}

function machineFor(mode: Mode): CleanMachine {
  return new CleanMachine('bench', { ...machineSpec, setup, setupKey: 'bench-clean-state', ...mode.config }, mode.options)
}

/** One pass of `count` tests on a machine of its own, closed at the end so that none of its VMs outlives the pass. */
async function runPass(name: string, mode: Mode, count: number, tally: Tally): Promise<void> {
  const machine = machineFor(mode)
  try {
    for (let i = 0; i < count; i++) {
      const started = performance.now()
      const vm = await machine.acquire()
      const bodyStarted = performance.now()
      await stateMutatingTest(vm, name !== sharedMode)
      const bodyEnded = performance.now()
      machine.release(vm)
      const ended = performance.now()
      if (i === 0) {
        tally.firstAcquireMs.push(bodyStarted - started)
        continue
      }
      tally.overheadMs.push(bodyStarted - started + (ended - bodyEnded))
      tally.bodyMs.push(bodyEnded - bodyStarted)
      tally.totalMs += ended - started
    }
    tally.poolSize = machine.poolSize
  } finally {
    await machine.close()
  }
}

async function main(): Promise<void> {
  // The golden snapshot is built (or found) before timing: every mode starts from it alike.
  const warm = new CleanMachine('bench', { ...machineSpec, setup, setupKey: 'bench-clean-state', pool: 0 })
  const accel = (await warm.acquire()).handle.accel
  await warm.close()
  const tallies = new Map<string, Tally>(modes.map(([name]) => [name, { overheadMs: [], bodyMs: [], totalMs: 0, firstAcquireMs: [], poolSize: undefined }]))
  for (let done = 0, round = 0; done < testCount; done += chunk, round++) {
    const count = Math.min(chunk, testCount - done)
    const order = round % 2 === 0 ? modes : [...modes].reverse()
    for (const [name, mode] of order) await runPass(name, mode, count, tallies.get(name) as Tally)
    process.stderr.write(`bench: ${done + count}/${testCount} tests in each mode\n`)
  }
  report(tallies, accel)
}

function report(tallies: Map<string, Tally>, accel: string): void {
  const seconds = (ms: number) => (ms / 1000).toFixed(2)
  const passes = Math.ceil(testCount / chunk)
  const timed = testCount - passes
  const spec = image === 'tiny' ? 'tiny guest, 256 MiB, 1 vCPU' : 'Debian guest, 1024 MiB, 2 vCPUs'
  console.log(`\n${testCount} state-mutating tests per mode (${accel.toUpperCase()}, ${spec}, ${availableParallelism()} host cores), in ${passes} passes of up to ${chunk}, one mode's machines at a time`)
  console.log(`total and per-test figures: the ${timed} tests after each pass's first; per-test overhead = acquire + release\n`)
  console.log('| mode | pool | total | per-test overhead, median | test body, median | first acquire of a pass, median |')
  console.log('|---|---|---|---|---|---|')
  for (const [name, tally] of tallies) {
    console.log(`| ${name} | ${tally.poolSize ?? '-'} | ${seconds(tally.totalMs)} s | ${seconds(median(tally.overheadMs))} s | ${seconds(median(tally.bodyMs))} s | ${seconds(median(tally.firstAcquireMs))} s |`)
  }
  const defaultPool = tallies.get(defaultPoolMode)
  const noPool = tallies.get(noPoolMode)
  if (defaultPool && noPool) {
    const same = defaultPool.poolSize === 0 ? '; the default is pool 0 on this host, so both rows run the same configuration and their ratio is the noise' : ''
    console.log(`\ndefault pool (${defaultPool.poolSize}) / pool 0, totals: ${(defaultPool.totalMs / noPool.totalMs).toFixed(2)} (goal <= 1: the default is never slower than no pool${same})`)
  }
  if (image === 'tiny' && tallies.size === Object.keys(tinyModes).length) printGoals(tallies)
}

function printGoals(tallies: Map<string, Tally>): void {
  const seconds = (ms: number) => (ms / 1000).toFixed(2)
  const get = (name: string) => tallies.get(name) as Tally
  const pool = get(defaultPoolMode)
  const reboot = get('reboot per test').totalMs
  const shared = get(sharedMode).totalMs
  const internal = get(noPoolMode)
  const threaded = get('rollback, internal snapshot, no pool, thread-pool disk I/O')
  const external = get('rollback, external snapshot, no pool')
  const reloading = get('rollback, warm pool of 2')
  const clones = get('rollback, warm pool of 2, fresh clones')
  console.log(`\nwith the default pool (${pool.poolSize}):`)
  console.log(`reboot per test / default pool: ${(reboot / pool.totalMs).toFixed(1)}x faster (goal >= 20x)`)
  console.log(`default pool / no isolation: ${(pool.totalMs / shared).toFixed(2)}x (goal <= 1.2x)`)
  console.log(`per-test overhead with the default pool, median: ${seconds(median(pool.overheadMs))} s (goal <= 0.10 s)`)
  console.log(`restore -> SSH without a pool, median: internal ${seconds(median(internal.overheadMs))} s, external ${seconds(median(external.overheadMs))} s (goal <= 0.5 s)`)
  console.log(`internal restore, io_uring / thread-pool disk I/O: ${(median(internal.overheadMs) / median(threaded.overheadMs)).toFixed(2)} (overhead medians)`)
  console.log(`warm pool of 2, reloading used VMs / fresh clones: ${(reloading.totalMs / clones.totalMs).toFixed(2)} (totals)`)
}

await main()
