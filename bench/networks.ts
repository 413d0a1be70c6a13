// Networks between guests, three figures from one run (ratios against baselines measured in the
// same run, since these machines are shared and noisy):
//
// 1. Data path: guest-to-guest round trip (the median reply of a run of pings) and 16 MiB of TCP
//    (dd | nc), between two tiny guests the library started on a Network, against the same two
//    guests wired by hand (a vde_switch and QEMUs this script starts itself with the backend's
//    command line, see hand-wired.ts). Both are timed inside the guest, so that neither side's SSH
//    path counts. Both pairs run for the whole measurement and take turns round by round, the
//    order reversing every round, so that load from neighbours falls on both alike.
// 2. Per-test overhead of a two-machine CleanGroup with its default pool: from release() of one
//    test to acquire() resolving for the next; beside it a single CleanMachine with its default
//    pool. As in clean-state.ts only one of them exists at a time (a pass of `chunk` tests each,
//    closed before the other's pass, the order reversing every round), so that neither's pool
//    refills while the other is timed; each pass's first acquire is left out and shown apart.
//    The mean is shown beside the median: a recycling pool of 1 holds two copies, so after a short
//    test the next acquire finds the other copy ready or still reloading, turn about, and the
//    median of such a series lands on either side.
// 3. Without a pool: a group's per-test reload (pause all, load each, resume, reconnect each)
//    against a single VM's reload. Both exist throughout (idle while the other reloads: nothing
//    runs in the background without a pool) and take turns test by test, the order alternating.
//
// Every test body is one command in each machine, which also checks that it started clean.
//
// Options (flag or environment variable):
//   --rounds N (BENCH_NET_ROUNDS)               data path rounds, each pair once a round: 9
//   --pings N (BENCH_NET_PINGS)                 pings per round trip sample (0.05 s apart): 20
//   --pool-tests N (BENCH_NET_POOL_TESTS)       tests of the group, and of the single machine, with a pool: 30
//   --chunk N (BENCH_NET_CHUNK)                 tests per pass with a pool: 15
//   --reload-tests N (BENCH_NET_RELOAD_TESTS)   tests of each without a pool: 20
//   --measurements LIST (BENCH_NET_MEASUREMENTS) some of data-path,pool,reload (default all)
import { mkdir, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { CleanGroup } from '../src/machine/clean-group.js'
import { CleanMachine, type MachineConfig } from '../src/machine/clean-machine.js'
import { topologyOf, type GroupTopology } from '../src/machine/group-topology.js'
import { Vm } from '../src/machine/vm.js'
import { Network } from '../src/network/network.js'
import { nodeAddress } from '../src/network/addressing.js'
import { startHandWiredPair, type GuestResult, type GuestRun, type HandWiredPair } from './hand-wired.js'
import { countOption, median, stringOption } from './stats.js'

const rounds = countOption('rounds', 'BENCH_NET_ROUNDS', 9)
const pings = countOption('pings', 'BENCH_NET_PINGS', 20)
const poolTests = countOption('pool-tests', 'BENCH_NET_POOL_TESTS', 30)
const chunk = countOption('chunk', 'BENCH_NET_CHUNK', 15)
const reloadTests = countOption('reload-tests', 'BENCH_NET_RELOAD_TESTS', 20)
const allMeasurements = ['data-path', 'pool', 'reload'] as const
type Measurement = (typeof allMeasurements)[number]
const measurements = new Set(stringOption('measurements', 'BENCH_NET_MEASUREMENTS', allMeasurements.join(',')).split(',').filter(Boolean))
for (const name of measurements) {
  if (!allMeasurements.includes(name as Measurement)) throw new Error(`--measurements takes some of ${allMeasurements.join(',')}, got ${name}`)
}
if (chunk < 2) throw new Error('--chunk must be at least 2: the first acquire of a pass is not counted')

const goals = { dataPathRatio: 1.05, poolOverheadS: 0.15, reloadRatio: 1.5 }
/** 16 MiB. */
const transferBlocks = { size: '64k', count: 256, mib: 16 }
const guestCommandTimeoutMs = 120_000
/** The network both pairs use: the same addresses, MACs and ports on two separate switches. */
const networkIndex = 1
const sender = nodeAddress(networkIndex, 1)
const receiver = nodeAddress(networkIndex, 2)

interface Pair {
  label: string
  sender: GuestRun
  receiver: GuestRun
}

interface DataPathResult {
  rttMs: { library: number[]; handWired: number[] }
  mibPerS: { library: number[]; handWired: number[] }
}

async function must(run: GuestRun, command: string): Promise<string> {
  const result: GuestResult = await run(command, guestCommandTimeoutMs)
  if (result.exitCode !== 0) throw new Error(`'${command}' exited ${result.exitCode}: ${result.stderr.trim() || result.stdout.trim()}`)
  return result.stdout
}

/**
 * The median of one run of pings (busybox prints `time=1.234 ms` per reply), in ms. Not ping's
 * own average: on a shared host one reply in twenty that waits 30 ms for a CPU moves the average
 * of the whole sample.
 */
async function roundTripMs(pair: Pair): Promise<number> {
  const out = await must(pair.sender, `ping -c ${pings} -i 0.05 -W 5 ${receiver.ipv4}`)
  const times = [...out.matchAll(/time=([\d.]+) ms/g)].map((match) => Number(match[1]))
  if (times.length < Math.ceil(pings / 2)) throw new Error(`${pair.label}: ${times.length} of ${pings} pings answered: ${out}`)
  return median(times)
}

/**
 * Until no guest has ext4lazyinit running (the kernel zeroes inode tables in the background for a
 * few seconds after a boot's first mount): its disk writes would fall on whichever pair booted last.
 */
async function settle(runs: GuestRun[]): Promise<void> {
  await Promise.all(
    runs.map(async (run) => {
      const result = await run(`for i in $(seq 120); do ps | grep -q '[e]xt4lazyinit' || exit 0; sleep 0.5; done; exit 1`, guestCommandTimeoutMs)
      if (result.exitCode !== 0) process.stderr.write('data path: a guest still runs ext4lazyinit after 60 s; measuring anyway\n')
    }),
  )
}

/**
 * 16 MiB from dd through nc to a listener that throws it away, timed in the sender from before dd
 * to nc's exit, which comes after the receiver has read everything and closed (busybox nc sends
 * its FIN at the end of its stdin and exits when the peer's comes). The listener's stdin is a
 * sleep, because at the end of its stdin it would send a FIN first and the sender would stop.
 * `/proc/uptime` has 10 ms steps: under 1 % of a transfer under TCG.
 */
async function transferSeconds(pair: Pair, port: number, check = false): Promise<number> {
  const listen = check ? `(sleep 60 | nc -l -p ${port} | wc -c > /tmp/received-${port}) </dev/null 2>/dev/null &` : `(sleep 60 | nc -l -p ${port}) </dev/null >/dev/null 2>&1 &`
  await must(pair.receiver, `${listen} for i in $(seq 200); do netstat -ltn | grep -q ':${port} ' && exit 0; sleep 0.05; done; echo 'nothing listens on ${port}' >&2; exit 1`)
  const out = await must(
    pair.sender,
    `s=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero bs=${transferBlocks.size} count=${transferBlocks.count} 2>/dev/null | timeout 100 nc ${receiver.ipv4} ${port}; rc=$?; e=$(cut -d' ' -f1 /proc/uptime); echo "$rc $s $e"`,
  )
  const [rc, start, end] = out.trim().split(' ').map(Number)
  if (rc !== 0 || start === undefined || end === undefined || !(end > start)) throw new Error(`${pair.label}: the transfer failed or was not timed: ${out}`)
  if (check) {
    const received = (await must(pair.receiver, `for i in $(seq 100); do [ -s /tmp/received-${port} ] && break; sleep 0.05; done; cat /tmp/received-${port}`)).trim()
    if (Number(received) !== transferBlocks.count * 64 * 1024) throw new Error(`${pair.label}: the receiver got ${received} bytes, not ${transferBlocks.mib} MiB`)
  }
  return end - start
}

async function dataPath(): Promise<DataPathResult> {
  const result: DataPathResult = { rttMs: { library: [], handWired: [] }, mibPerS: { library: [], handWired: [] } }
  let network: Network | undefined
  const vms: Vm[] = []
  let hand: HandWiredPair | undefined
  try {
    network = await Network.create({ name: 'lan', index: networkIndex })
    for (const name of ['a', 'b']) vms.push(await Vm.start({ image: 'tiny', name, networks: [network] }))
    const [a, b] = vms as [Vm, Vm]
    if ((await a.guestIp()) !== sender.ipv4 || (await b.guestIp()) !== receiver.ipv4) throw new Error('the library gave the pair other addresses than the hand-wired one has')
    const library: Pair = { label: 'library', sender: (command, timeoutMs) => a.exec(command, { timeoutMs }), receiver: (command, timeoutMs) => b.exec(command, { timeoutMs }) }
    hand = await startHandWiredPair(['a', 'b'], networkIndex)
    const [handA, handB] = hand.guests
    if (!handA || !handB) throw new Error('the hand-wired pair should have two guests')
    const handWired: Pair = { label: 'hand-wired', sender: handA.run, receiver: handB.run }
    await settle([library.sender, library.receiver, handWired.sender, handWired.receiver])
    let port = 5000
    // Warm-up, not counted: ARP, the guests' translated code, and one checked transfer each.
    for (const pair of [library, handWired]) {
      await must(pair.sender, `ping -c 3 -i 0.05 -W 5 ${receiver.ipv4}`)
      await must(pair.receiver, `ping -c 3 -i 0.05 -W 5 ${sender.ipv4}`)
      await transferSeconds(pair, port++, true)
    }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? [library, handWired] : [handWired, library]
      for (const pair of order) {
        const key = pair === library ? 'library' : 'handWired'
        result.rttMs[key].push(await roundTripMs(pair))
        result.mibPerS[key].push(transferBlocks.mib / (await transferSeconds(pair, port++)))
      }
      const last = (values: number[]) => (values.at(-1) as number).toFixed(2)
      process.stderr.write(
        `data path round ${round + 1}/${rounds}: RTT library ${last(result.rttMs.library)} ms, hand-wired ${last(result.rttMs.handWired)} ms; ` +
          `TCP library ${last(result.mibPerS.library)} MiB/s, hand-wired ${last(result.mibPerS.handWired)} MiB/s\n`,
      )
    }
    return result
  } finally {
    await hand?.destroy()
    await Promise.all(vms.map((vm) => vm.destroy()))
    await network?.destroy()
  }
}

/** Fails unless the machine starts clean, then leaves a mark that the next test must not see. */
async function testBody(vms: Vm[]): Promise<void> {
  await Promise.all(vms.map((vm) => vm.succeed('test ! -e /root/mark && touch /root/mark')))
}

const tiny = (extra: Partial<MachineConfig> = {}): MachineConfig => ({ image: 'tiny', ...extra })
const groupTopology = (extra: Partial<MachineConfig> = {}): GroupTopology => topologyOf({ a: tiny(extra), b: tiny(extra) }, undefined).groups[0] as GroupTopology

/** acquire/release/close of a CleanGroup or a CleanMachine, with the machines of what it hands out. */
interface Subject {
  acquire(): Promise<Vm[]>
  release(): void
  close(): Promise<void>
  poolSize(): number | undefined
}

function groupSubject(extra: Partial<MachineConfig> = {}): Subject {
  const group = new CleanGroup(groupTopology(extra))
  let held: Awaited<ReturnType<CleanGroup['acquire']>> | undefined
  return {
    acquire: async () => (held = await group.acquire()).members,
    release: () => held && group.release(held),
    close: () => group.close(),
    poolSize: () => group.poolSize,
  }
}

function machineSubject(extra: Partial<MachineConfig> = {}): Subject {
  const machine = new CleanMachine('single', tiny(extra))
  let held: Vm | undefined
  return {
    acquire: async () => [(held = await machine.acquire())],
    release: () => held && machine.release(held),
    close: () => machine.close(),
    poolSize: () => machine.poolSize,
  }
}

interface PoolTally {
  /** From release() to the next acquire() resolving. */
  overheadMs: number[]
  firstAcquireMs: number[]
  poolSize: number | undefined
}

/** One pass of `count` tests; the subject is closed at the end, so none of its VMs outlives the pass. */
async function poolPass(label: string, subject: Subject, count: number, tally: PoolTally): Promise<void> {
  const before = tally.overheadMs.length
  try {
    const started = performance.now()
    await testBody(await subject.acquire())
    tally.firstAcquireMs.push(performance.now() - started)
    for (let i = 1; i < count; i++) {
      const released = performance.now()
      subject.release()
      const vms = await subject.acquire()
      tally.overheadMs.push(performance.now() - released)
      await testBody(vms)
    }
    tally.poolSize = subject.poolSize()
    process.stderr.write(`pool, ${label}: release -> acquire ${tally.overheadMs.slice(before).map((ms) => (ms / 1000).toFixed(2)).join(' ')} s\n`)
  } finally {
    await subject.close()
  }
}

async function poolOverhead(): Promise<{ group: PoolTally; single: PoolTally }> {
  const group: PoolTally = { overheadMs: [], firstAcquireMs: [], poolSize: undefined }
  const single: PoolTally = { overheadMs: [], firstAcquireMs: [], poolSize: undefined }
  for (let done = 0, round = 0; done < poolTests; done += chunk, round++) {
    const count = Math.max(2, Math.min(chunk, poolTests - done))
    const passes = [() => poolPass('group', groupSubject(), count, group), () => poolPass('single', machineSubject(), count, single)]
    for (const pass of round % 2 === 0 ? passes : passes.reverse()) await pass()
    process.stderr.write(`pool: ${Math.min(done + count, poolTests)}/${poolTests} tests of each\n`)
  }
  return { group, single }
}

async function reloadCost(): Promise<{ groupMs: number[]; singleMs: number[] }> {
  const result = { groupMs: [] as number[], singleMs: [] as number[] }
  const group = groupSubject({ pool: 0 })
  const single = machineSubject({ pool: 0 })
  try {
    // The first acquires (clone and internal save) are not counted.
    await testBody(await group.acquire())
    await testBody(await single.acquire())
    for (let i = 0; i < reloadTests; i++) {
      const turns: [Subject, number[]][] = [
        [group, result.groupMs],
        [single, result.singleMs],
      ]
      for (const [subject, samples] of i % 2 === 0 ? turns : turns.reverse()) {
        const released = performance.now()
        subject.release()
        const vms = await subject.acquire()
        samples.push(performance.now() - released)
        await testBody(vms)
      }
    }
    return result
  } finally {
    await Promise.all([group.close(), single.close()])
  }
}

/** Golden snapshots of the group and of the single machine, built (or found) before anything is timed. */
async function warmUp(): Promise<string> {
  const group = groupSubject({ pool: 0 })
  const single = machineSubject({ pool: 0 })
  try {
    const [vm] = await group.acquire()
    await single.acquire()
    return (vm as Vm).handle.accel
  } finally {
    await Promise.all([group.close(), single.close()])
  }
}

function verdict(pass: boolean): string {
  return pass ? 'PASS' : 'MISS'
}

async function main(): Promise<void> {
  const accel = await warmUp()
  const results: Record<string, unknown> = { accel, cores: availableParallelism() }
  const lines: string[] = [`\nnetworks between guests (${accel.toUpperCase()}, tiny guests, 256 MiB, 1 vCPU, ${availableParallelism()} host cores)`]
  const summary: string[] = []
  const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`

  if (measurements.has('data-path')) {
    const data = await dataPath()
    const rtt = { library: median(data.rttMs.library), handWired: median(data.rttMs.handWired) }
    const tcp = { library: median(data.mibPerS.library), handWired: median(data.mibPerS.handWired) }
    const rttRatio = rtt.library / rtt.handWired
    const tcpRatio = tcp.library / tcp.handWired
    results.dataPath = { rounds, pings, rttMs: { ...rtt, ratio: rttRatio, samples: data.rttMs }, mibPerS: { ...tcp, ratio: tcpRatio, samples: data.mibPerS } }
    lines.push(
      `data path, ${rounds} rounds (medians; timed in the guest):`,
      `  round trip (ping, median of ${pings} replies per sample): library ${rtt.library.toFixed(2)} ms, hand-wired ${rtt.handWired.toFixed(2)} ms, library/hand-wired ${rttRatio.toFixed(3)}`,
      `  TCP, ${transferBlocks.mib} MiB (dd | nc): library ${tcp.library.toFixed(2)} MiB/s, hand-wired ${tcp.handWired.toFixed(2)} MiB/s, library/hand-wired ${tcpRatio.toFixed(3)}`,
    )
    summary.push(
      `data path round trip, library/hand-wired: ${rttRatio.toFixed(3)} (goal <= ${goals.dataPathRatio}) ${verdict(rttRatio <= goals.dataPathRatio)}`,
      `data path throughput, library/hand-wired: ${tcpRatio.toFixed(3)} (goal >= ${(1 / goals.dataPathRatio).toFixed(3)}, within ${goals.dataPathRatio}x) ${verdict(tcpRatio >= 1 / goals.dataPathRatio)}`,
    )
  }

  if (measurements.has('pool')) {
    const pool = await poolOverhead()
    const group = median(pool.group.overheadMs)
    const single = median(pool.single.overheadMs)
    results.pool = { tests: poolTests, chunk, group: { medianMs: group, ...pool.group }, single: { medianMs: single, ...pool.single } }
    const passes = Math.ceil(poolTests / chunk)
    const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length
    lines.push(
      `with the default pool, release -> next acquire (${pool.group.overheadMs.length} timed tests of each in ${passes} passes; each pass's first acquire apart):`,
      `  group of two (pool ${pool.group.poolSize ?? '?'}): median ${seconds(group)}, mean ${seconds(mean(pool.group.overheadMs))} (first acquire of a pass, median ${seconds(median(pool.group.firstAcquireMs))})`,
      `  single machine (pool ${pool.single.poolSize ?? '?'}): median ${seconds(single)}, mean ${seconds(mean(pool.single.overheadMs))} (first acquire of a pass, median ${seconds(median(pool.single.firstAcquireMs))})`,
    )
    summary.push(`group per-test overhead with the default pool, median: ${seconds(group)} (goal <= ${goals.poolOverheadS.toFixed(2)} s) ${verdict(group / 1000 <= goals.poolOverheadS)}; single machine ${seconds(single)}`)
  }

  if (measurements.has('reload')) {
    const reload = await reloadCost()
    const group = median(reload.groupMs)
    const single = median(reload.singleMs)
    const ratio = group / single
    results.reload = { tests: reloadTests, groupMedianMs: group, singleMedianMs: single, ratio, ...reload }
    lines.push(`without a pool, per-test reload (release -> acquire, medians of ${reloadTests}, alternating): group of two ${seconds(group)}, single machine ${seconds(single)}, group/single ${ratio.toFixed(2)}`)
    summary.push(`group reload / single reload without a pool: ${ratio.toFixed(2)}x (goal <= ${goals.reloadRatio}x) ${verdict(ratio <= goals.reloadRatio)}`)
  }

  process.stdout.write(`${[...lines, '', ...summary].join('\n')}\n`)
  await mkdir('bench/results', { recursive: true })
  await writeFile('bench/results/networks.json', JSON.stringify(results, null, 2))
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`)
    process.exit(1)
  },
)
