// Cold boot → first SSH command, and one command's round trip: the library against plain
// baselines measured in the same run (ratios, since these machines are shared and noisy).
import { mkdir, writeFile } from 'node:fs/promises'
import { execa } from 'execa'
import ssh2 from 'ssh2'
import { QemuHypervisor } from '../src/hypervisor/qemu/qemu-hypervisor.js'
import { freeLoopbackPort } from '../src/host/free-port.js'
import { findBinary } from '../src/host/find-binary.js'
import { Vm } from '../src/machine/vm.js'
import { resolveSpec } from '../src/spec/vm-spec.js'
import { runClientKey } from '../src/ssh/keys.js'
import { median, timeIt } from './stats.js'

const bootRounds = Number(process.env.BENCH_BOOT_ROUNDS ?? 7)
const commandRounds = Number(process.env.BENCH_COMMAND_ROUNDS ?? 100)
const opensshRounds = Number(process.env.BENCH_OPENSSH_ROUNDS ?? 20)
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
 * The same argv, spawned plainly, polled with bare ssh2 connects until `true` runs. A round that
 * gets no session within `starvedAfterMs` ends there and is reported and repeated, so a guest
 * that never answers cannot hang the bench.
 */
async function baselineBoot(hypervisor: QemuHypervisor, qemu: string): Promise<number | 'starved'> {
  const handle = await hypervisor.prepare(resolveSpec({ image: 'tiny', name: 'baseline' }))
  const port = await freeLoopbackPort()
  const argv = hypervisor.commandLine(handle, port)
  const key = await runClientKey()
  const started = performance.now()
  const child = execa(qemu, argv, { reject: false, stdin: 'ignore' })
  try {
    while (performance.now() - started < starvedAfterMs) {
      const ok = await new Promise<boolean>((resolve) => {
        const client = new ssh2.Client()
        const giveUp = setTimeout(() => {
          client.destroy()
          resolve(false)
        }, 2_000)
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
        client.connect({ host: '127.0.0.1', port, username: 'root', privateKey: key.privateKey, readyTimeout: 1000 })
      })
      if (ok) return performance.now() - started
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return 'starved'
  } finally {
    child.kill('SIGKILL')
    await child
    await hypervisor.destroy(handle)
  }
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

async function main(): Promise<void> {
  const qemu = (await findBinary('qemu-system-x86_64')) as string
  const hypervisor = new QemuHypervisor()
  await libraryBoot() // warm-up: builds the image and caches the accelerator verdict
  // Paired samples, alternating which goes first, so that load on this shared machine hits both alike.
  const library: number[] = []
  const baseline: number[] = []
  let starvedRounds = 0
  for (let round = 0; library.length < bootRounds && round < bootRounds * 2; round++) {
    const libraryFirst = round % 2 === 1
    const first = libraryFirst ? await libraryBoot() : await baselineBoot(hypervisor, qemu)
    const second = libraryFirst ? await baselineBoot(hypervisor, qemu) : await libraryBoot()
    const [libraryMs, baselineMs] = libraryFirst ? [first as number, second] : [second as number, first]
    if (baselineMs === 'starved') {
      starvedRounds++
      process.stderr.write(`boot round ${round + 1}: the baseline's poll loop got no SSH within ${starvedAfterMs / 1000} s; round repeated\n`)
      continue
    }
    library.push(libraryMs)
    baseline.push(baselineMs)
    process.stderr.write(`boot round ${round + 1}: baseline ${baselineMs.toFixed(0)} ms, library ${libraryMs.toFixed(0)} ms\n`)
  }

  const vm = await Vm.start({ image: 'tiny', name: 'bench-commands' })
  const key = await runClientKey()
  const port = vm.handle.ssh!.port
  const knownHosts = `${key.path}.known_hosts`
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${vm.handle.ssh!.hostKey}\n`, { mode: 0o600 })
  const opensshArgs = ['-i', key.path, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-p', String(port), 'root@127.0.0.1', 'true']
  const raw = await rawSshClient(port, key.privateKey)
  const libraryCommand: number[] = []
  const rawCommand: number[] = []
  const opensshCommand: number[] = []
  for (let i = 0; i < 10; i++) await Promise.all([vm.exec('true'), rawExec(raw)])
  for (let i = 0; i < commandRounds; i++) {
    libraryCommand.push(await timeIt(() => vm.exec('true')))
    rawCommand.push(await timeIt(() => rawExec(raw)))
    if (i % Math.ceil(commandRounds / opensshRounds) === 0) opensshCommand.push(await timeIt(() => execa('ssh', opensshArgs)))
  }
  raw.end()
  await vm.destroy()

  const bootRatios = library.map((ms, i) => ms / (baseline[i] as number))
  const results = {
    accel: vm.handle.accel,
    bootMs: { library: median(library), baseline: median(baseline), medianPairedRatio: median(bootRatios), pairedRatios: bootRatios, rounds: library.length, baselineStarvedRounds: starvedRounds },
    commandMs: {
      library: median(libraryCommand),
      rawSsh2: median(rawCommand),
      openssh: median(opensshCommand),
      libraryOverRawSsh2: median(libraryCommand) / median(rawCommand),
      opensshOverLibrary: median(opensshCommand) / median(libraryCommand),
    },
  }
  const lines = [
    `accelerator: ${results.accel}`,
    `cold boot → first SSH command (${library.length} paired rounds; ${starvedRounds} baseline rounds without SSH, repeated): library ${results.bootMs.library.toFixed(0)} ms, hand-started QEMU + ssh2 poll ${results.bootMs.baseline.toFixed(0)} ms (medians); median paired ratio ${results.bootMs.medianPairedRatio.toFixed(3)} (goal <= 1.05); ratios ${bootRatios.map((r) => r.toFixed(2)).join(' ')}`,
    `one command round trip (median of ${commandRounds}, interleaved): library ${results.commandMs.library.toFixed(1)} ms, raw ssh2 ${results.commandMs.rawSsh2.toFixed(1)} ms, ratio ${results.commandMs.libraryOverRawSsh2.toFixed(3)} (goal <= 1.1)`,
    `OpenSSH client per command (median of ${opensshCommand.length}, interleaved): ${results.commandMs.openssh.toFixed(0)} ms, ${results.commandMs.opensshOverLibrary.toFixed(1)}x the library (goal >= 10x)`,
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
