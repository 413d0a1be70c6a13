// Cold boot → first SSH command, and one command's round trip: the library against plain
// baselines measured in the same run (ratios, since these machines are shared and noisy).
// Counts: --boot-rounds N --command-rounds N --openssh-rounds N (or BENCH_BOOT_ROUNDS,
// BENCH_COMMAND_ROUNDS, BENCH_OPENSSH_ROUNDS); defaults 7, 100, 20.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import ssh2 from 'ssh2'
import { consolePollMs, consoleShows } from './console-marker.js'
import { diskIoVerdict, type DiskIoMode } from '../src/hypervisor/qemu/disk-io.js'
import { QemuHypervisor } from '../src/hypervisor/qemu/qemu-hypervisor.js'
import { freeLoopbackPort } from '../src/host/free-port.js'
import { locateRequired } from '../src/host/requirements.js'
import { Vm } from '../src/machine/vm.js'
import { resolveSpec } from '../src/spec/vm-spec.js'
import { runClientKey } from '../src/ssh/keys.js'
import { SshSession } from '../src/ssh/ssh-session.js'
import { countOption, median, timeIt } from './stats.js'

const bootRounds = countOption('boot-rounds', 'BENCH_BOOT_ROUNDS', 7)
const commandRounds = countOption('command-rounds', 'BENCH_COMMAND_ROUNDS', 100)
const opensshRounds = countOption('openssh-rounds', 'BENCH_OPENSSH_ROUNDS', 20)
const starvedAfterMs = 60_000

async function libraryBoot(): Promise<number> {
  let vm: Vm | undefined
  const ms = await timeIt(async () => {
    vm = await Vm.start({ image: 'tiny', name: 'bench' })
    await vm.exec('true')
  })
  await vm?.destroy()
  return ms
}

/**
 * QEMU started by hand with exactly the argv the library launches (the backend's own command
 * line, with the same disk I/O mode, through the same `setpriv --pdeathsig KILL`), then `true`
 * over bare ssh2. A round that gets no session within `starvedAfterMs` ends there and is reported
 * and repeated, so a guest that never answers cannot hang the bench.
 *
 * Readiness is detected the way the library detects it, so that neither side has a structural
 * advantage: watch the console log for the image's ready marker (read every 20 ms, as the library
 * does), then connect. An SSH poll instead would see the guest late: through user-mode networking
 * an attempt made before sshd listens is accepted and then stalls, so each attempt needs a timeout
 * (the old baseline's was 1 s, so it could see a ready guest up to a second late), and a finer
 * poll costs the guest CPU while it boots.
 */
async function baselineBoot(hypervisor: QemuHypervisor, tools: { qemu: string; setpriv: string; diskIo: DiskIoMode }): Promise<number | 'starved'> {
  const handle = await hypervisor.prepare(resolveSpec({ image: 'tiny', name: 'baseline' }))
  const port = await freeLoopbackPort()
  const argv = hypervisor.commandLine(handle, port)
  if (!argv.some((arg) => arg.includes(`aio=${tools.diskIo}`))) throw new Error(`the backend's command line lacks aio=${tools.diskIo}: ${argv.join(' ')}`)
  const endpoint = hypervisor.consoleEndpoint(handle)
  if (endpoint.kind !== 'unix-socket' || !handle.readyMarker) throw new Error('the tiny image should have a console log and a ready marker')
  const key = await runClientKey()
  const started = performance.now()
  const child = execa(tools.setpriv, ['--pdeathsig', 'KILL', '--', tools.qemu, ...argv], { reject: false, stdin: 'ignore' })
  const deadline = started + starvedAfterMs
  try {
    if (!(await consoleShows(endpoint.logPath, handle.readyMarker, deadline))) return 'starved'
    while (performance.now() < deadline) {
      if (await sshTrue(port, key.privateKey)) return performance.now() - started
      await new Promise((resolve) => setTimeout(resolve, consolePollMs))
    }
    return 'starved'
  } finally {
    child.kill('SIGKILL')
    await child
    await hypervisor.destroy(handle)
  }
}

/** One ssh2 connection that runs `true` and ends; false when it fails or takes over 5 s. */
function sshTrue(port: number, privateKey: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const client = new ssh2.Client()
    const giveUp = setTimeout(() => {
      client.destroy()
      resolve(false)
    }, 5_000)
    client.on('error', () => {
      clearTimeout(giveUp)
      client.destroy()
      resolve(false)
    })
    client.on('ready', () => {
      client.setNoDelay(true)
      client.exec('true', (error, channel) => {
        if (error) return resolve(false)
        channel.on('close', () => {
          clearTimeout(giveUp)
          client.end()
          resolve(true)
        })
        channel.resume()
      })
    })
    client.connect({ host: '127.0.0.1', port, username: 'root', privateKey, readyTimeout: 5_000 })
  })
}

async function rawSshClient(port: number, privateKey: string): Promise<ssh2.Client> {
  const client = new ssh2.Client()
  await new Promise<void>((resolve, reject) => {
    client.on('ready', () => resolve())
    client.on('error', reject)
    client.connect({ host: '127.0.0.1', port, username: 'root', privateKey })
  })
  client.setNoDelay(true)
  return client
}

function rawExec(client: ssh2.Client): Promise<void> {
  return new Promise<void>((resolve, reject) =>
    client.exec('true', (error, channel) => {
      if (error) return reject(error)
      channel.on('close', () => resolve())
      channel.resume()
    }),
  )
}

/** An OpenSSH master connection (ControlMaster) that later `ssh` runs reuse through its socket. */
async function opensshMaster(common: string[], socket: string): Promise<{ close(): Promise<void> }> {
  const master = execa('ssh', [...common, '-o', 'ControlMaster=yes', '-o', `ControlPath=${socket}`, '-N', 'root@127.0.0.1'], { reject: false, stdin: 'ignore' })
  const check = ['-o', `ControlPath=${socket}`, '-O', 'check', 'root@127.0.0.1']
  const deadline = performance.now() + 30_000
  while ((await execa('ssh', check, { reject: false })).exitCode !== 0) {
    if (performance.now() > deadline || master.exitCode !== null) throw new Error(`the OpenSSH master did not come up: ${(await master).stderr}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return {
    async close() {
      await execa('ssh', ['-o', `ControlPath=${socket}`, '-O', 'exit', 'root@127.0.0.1'], { reject: false })
      master.kill('SIGKILL')
      await master
    },
  }
}

async function main(): Promise<void> {
  // The host tools the backend uses: the same QEMU (VMHARNESS_QEMU counts), setpriv and disk I/O verdict.
  const qemu = await locateRequired('qemu-system')
  const tools = { qemu, setpriv: await locateRequired('setpriv'), diskIo: (await diskIoVerdict(qemu)).mode }
  const hypervisor = new QemuHypervisor()
  await libraryBoot() // warm-up: builds the image and caches the accelerator verdict
  // Paired samples, alternating which goes first, so that load on this shared machine hits both alike.
  const library: number[] = []
  const baseline: number[] = []
  let starvedRounds = 0
  for (let round = 0; library.length < bootRounds && round < bootRounds * 2; round++) {
    const libraryFirst = round % 2 === 1
    const first = libraryFirst ? await libraryBoot() : await baselineBoot(hypervisor, tools)
    const second = libraryFirst ? await baselineBoot(hypervisor, tools) : await libraryBoot()
    const [libraryMs, baselineMs] = libraryFirst ? [first as number, second] : [second as number, first]
    if (baselineMs === 'starved') {
      starvedRounds++
      process.stderr.write(`boot round ${round + 1}: the baseline got no SSH within ${starvedAfterMs / 1000} s; round repeated\n`)
      continue
    }
    library.push(libraryMs)
    baseline.push(baselineMs)
    process.stderr.write(`boot round ${round + 1}: baseline ${baselineMs.toFixed(0)} ms, library ${libraryMs.toFixed(0)} ms\n`)
  }

  const vm = await Vm.start({ image: 'tiny', name: 'bench-commands' })
  const target = vm.handle.ssh!
  const key = await runClientKey()
  const port = target.port
  const knownHosts = `${key.path}.known_hosts`
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${target.hostKey}\n`, { mode: 0o600 })
  const common = ['-i', key.path, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-p', String(port)]
  const socketDir = await mkdtemp(join(tmpdir(), 'vmh-ssh-'))
  const socket = join(socketDir, 'master')
  const master = await opensshMaster(common, socket)
  const opensshNew = [...common, '-o', 'ControlMaster=no', '-o', 'ControlPath=none', 'root@127.0.0.1', 'true']
  const opensshReused = [...common, '-o', 'ControlMaster=no', '-o', `ControlPath=${socket}`, 'root@127.0.0.1', 'true']
  const libraryNewConnection = async () => {
    const session = await SshSession.connect(target, { timeoutMs: 30_000 })
    try {
      await session.exec('true')
    } finally {
      session.close()
    }
  }
  const raw = await rawSshClient(port, key.privateKey)
  const samples = { library: [] as number[], rawSsh2: [] as number[], opensshNew: [] as number[], libraryNew: [] as number[], opensshReused: [] as number[] }
  for (let i = 0; i < 10; i++) await Promise.all([vm.exec('true'), rawExec(raw)])
  await execa('ssh', opensshReused)
  for (let i = 0; i < commandRounds; i++) {
    samples.library.push(await timeIt(() => vm.exec('true')))
    samples.rawSsh2.push(await timeIt(() => rawExec(raw)))
    if (i % Math.ceil(commandRounds / opensshRounds) === 0) {
      samples.opensshNew.push(await timeIt(() => execa('ssh', opensshNew)))
      samples.libraryNew.push(await timeIt(libraryNewConnection))
      samples.opensshReused.push(await timeIt(() => execa('ssh', opensshReused)))
    }
  }
  raw.end()
  await master.close()
  await rm(socketDir, { recursive: true, force: true })
  await vm.destroy()

  const bootRatios = library.map((ms, i) => ms / (baseline[i] as number))
  const m = Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)])) as Record<keyof typeof samples, number>
  const results = {
    accel: vm.handle.accel,
    diskIo: tools.diskIo,
    bootMs: { library: median(library), baseline: median(baseline), medianPairedRatio: median(bootRatios), pairedRatios: bootRatios, rounds: library.length, baselineStarvedRounds: starvedRounds },
    commandMs: {
      ...m,
      libraryOverRawSsh2: m.library / m.rawSsh2,
      opensshNewOverLibraryReused: m.opensshNew / m.library,
      opensshNewOverLibraryNew: m.opensshNew / m.libraryNew,
      opensshReusedOverLibraryReused: m.opensshReused / m.library,
    },
  }
  const ms = (value: number) => `${value.toFixed(value < 100 ? 1 : 0)} ms`
  const lines = [
    `accelerator: ${results.accel}; disk I/O: ${tools.diskIo} (the baseline runs the backend's own argv)`,
    `cold boot → first SSH command (${library.length} paired rounds; ${starvedRounds} baseline rounds without SSH, repeated): library ${results.bootMs.library.toFixed(0)} ms, QEMU started by hand + console ready marker + ssh2 ${results.bootMs.baseline.toFixed(0)} ms (medians); median paired ratio ${results.bootMs.medianPairedRatio.toFixed(3)} (goal <= 1.05); ratios ${bootRatios.map((r) => r.toFixed(2)).join(' ')}`,
    `one command on an open connection (median of ${commandRounds}, interleaved): library ${ms(m.library)}, raw ssh2 ${ms(m.rawSsh2)}, ratio ${results.commandMs.libraryOverRawSsh2.toFixed(3)} (goal <= 1.1)`,
    `the goal's comparison, not like for like: \`ssh host true\` (a new OpenSSH connection and handshake per command, median of ${samples.opensshNew.length}) ${ms(m.opensshNew)} against the library's command on its open connection: ${results.commandMs.opensshNewOverLibraryReused.toFixed(1)}x (goal >= 10x)`,
    `new connection + command, both sides (median of ${samples.libraryNew.length}): \`ssh host true\` ${ms(m.opensshNew)}, library (connect, exec, close) ${ms(m.libraryNew)}: OpenSSH takes ${results.commandMs.opensshNewOverLibraryNew.toFixed(2)}x`,
    `open connection reused, both sides (median of ${samples.opensshReused.length}): OpenSSH through a ControlMaster socket (still one ssh process per command) ${ms(m.opensshReused)}, library ${ms(m.library)}: OpenSSH takes ${results.commandMs.opensshReusedOverLibraryReused.toFixed(2)}x`,
  ]
  process.stdout.write(lines.join('\n') + '\n')
  await mkdir('bench/results', { recursive: true })
  await writeFile('bench/results/boot-and-command.json', JSON.stringify(results, null, 2))
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`)
    process.exit(1)
  },
)
