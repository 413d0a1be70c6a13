// Guests on a network wired by hand, as a person would without the library: a vde_switch that this
// script starts itself, and QEMUs started with the backend's own command line, driven over bare
// ssh2. The baseline for the library's data path in bench/networks.ts.
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa, type ResultPromise } from 'execa'
import ssh2 from 'ssh2'
import { consoleShows } from './console-marker.js'
import type { VmHandle } from '../src/hypervisor/hypervisor.js'
import { QemuHypervisor } from '../src/hypervisor/qemu/qemu-hypervisor.js'
import { freeLoopbackPort } from '../src/host/free-port.js'
import { locateRequired } from '../src/host/requirements.js'
import { runDir } from '../src/host/run-dir.js'
import { nodeAddress } from '../src/network/addressing.js'
import type { NetworkAttachment } from '../src/spec/network-attachment.js'
import { resolveSpec } from '../src/spec/vm-spec.js'

export interface GuestResult {
  exitCode: number | null
  stdout: string
  stderr: string
}

/** Runs a shell command in one guest; rejects when it has not finished within `timeoutMs`. */
export type GuestRun = (command: string, timeoutMs: number) => Promise<GuestResult>

export interface HandWiredGuest {
  name: string
  run: GuestRun
}

export interface HandWiredPair {
  guests: HandWiredGuest[]
  /** Kills the QEMUs, then the switch, and removes their files. Safe to call twice. */
  destroy(): Promise<void>
}

/** How long a hand-started guest may take to print its ready marker (a loaded 2-core host under TCG). */
const bootDeadlineMs = 180_000

/**
 * A vde_switch on a fresh directory, then one QEMU per name on it (machine n is the n-th name, on
 * network `index`, with the addresses the library would give it), each up and answering ssh2.
 * Nothing is left running when it fails part way.
 */
export async function startHandWiredPair(names: string[], index: number): Promise<HandWiredPair> {
  const tools = { qemu: await locateRequired('qemu-system'), setpriv: await locateRequired('setpriv'), vdeSwitch: await locateRequired('vde-switch') }
  const hypervisor = new QemuHypervisor()
  // In the run directory only so that a crashed run's files are swept; nothing of the library touches them.
  const dir = await mkdtemp(join((await runDir()).path, 'hand-'))
  const socketDir = join(dir, 'sw')
  const cleanups: (() => Promise<void>)[] = [() => rm(dir, { recursive: true, force: true })]
  let destroying: Promise<void> | undefined
  const destroy = () => {
    destroying ??= (async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined)
    })()
    return destroying
  }
  try {
    cleanups.push(await startSwitch(tools, dir, socketDir))
    const hosts = names.map((name, position) => ({ name, ...nodeAddress(index, position + 1) }))
    const guests: HandWiredGuest[] = []
    for (const [position, name] of names.entries()) {
      const node = position + 1
      const attachment: NetworkAttachment = { network: 'lan', index, node, ...nodeAddress(index, node), switchSocket: socketDir, hosts: hosts.map(({ name, ipv4, ipv6 }) => ({ name, ipv4, ipv6 })) }
      const handle = await hypervisor.prepare(resolveSpec({ image: 'tiny', name, networks: [attachment] }))
      cleanups.push(() => hypervisor.destroy(handle))
      const { run, kill } = await startGuest(hypervisor, handle, tools)
      cleanups.push(kill)
      guests.push({ name, run })
    }
    return { guests, destroy }
  } catch (error) {
    await destroy()
    throw error
  }
}

/**
 * In the foreground through `setpriv --pdeathsig KILL`, with a stdin pipe that nothing writes to
 * (a foreground vde_switch exits at the end of its stdin): it dies with this process. The same
 * switch options as the library's (a switch, 255 ports, no rc file), without a management socket,
 * which nothing here needs. Resolves once its data socket exists.
 */
async function startSwitch(tools: { setpriv: string; vdeSwitch: string }, dir: string, socketDir: string): Promise<() => Promise<void>> {
  const args = ['--sock', socketDir, '--mode', '0600', '--dirmode', '0700', '--numports', '255', '--rcfile', '/dev/null']
  const child: ResultPromise = execa(tools.setpriv, ['--pdeathsig', 'KILL', '--', tools.vdeSwitch, ...args], { reject: false, stdin: 'pipe', stdout: 'ignore', stderr: 'pipe', cwd: dir })
  const stop = async () => {
    child.stdin?.end()
    const killer = setTimeout(() => child.kill('SIGKILL'), 2_000)
    await child
    clearTimeout(killer)
  }
  const deadline = performance.now() + 10_000
  while (!(await stat(join(socketDir, 'ctl')).catch(() => undefined))) {
    if (child.exitCode !== null || performance.now() > deadline) {
      await stop()
      throw new Error(`the hand-started vde_switch did not come up: ${(await child).stderr}`)
    }
    await sleep(20)
  }
  return stop
}

/** QEMU with the backend's command line, then the console's ready marker, then an ssh2 connection. */
async function startGuest(hypervisor: QemuHypervisor, handle: VmHandle, tools: { qemu: string; setpriv: string }): Promise<{ run: GuestRun; kill: () => Promise<void> }> {
  const port = await freeLoopbackPort()
  const argv = hypervisor.commandLine(handle, port)
  const endpoint = hypervisor.consoleEndpoint(handle)
  if (endpoint.kind !== 'unix-socket' || !handle.readyMarker || !handle.ssh) throw new Error('the tiny image should have a console log, a ready marker and SSH')
  const child = execa(tools.setpriv, ['--pdeathsig', 'KILL', '--', tools.qemu, ...argv], { reject: false, stdin: 'ignore', stdout: 'ignore' })
  let client: ssh2.Client | undefined
  const kill = async () => {
    client?.end()
    child.kill('SIGKILL')
    await child
  }
  try {
    const deadline = performance.now() + bootDeadlineMs
    if (!(await consoleShows(endpoint.logPath, handle.readyMarker, deadline, () => child.exitCode !== null))) {
      throw new Error(`hand-started guest ${handle.name} printed no ready marker: ${child.exitCode !== null ? (await child).stderr : 'timed out'}`)
    }
    client = await sshClient(port, handle.ssh.user, handle.ssh.privateKey)
    const connected = client
    return { run: (command, timeoutMs) => rawRun(connected, command, timeoutMs), kill }
  } catch (error) {
    await kill()
    throw error
  }
}

async function sshClient(port: number, username: string, privateKey: string): Promise<ssh2.Client> {
  const client = new ssh2.Client()
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve())
    client.once('error', reject)
    client.connect({ host: '127.0.0.1', port, username, privateKey, readyTimeout: 30_000 })
  })
  client.on('error', () => undefined)
  client.setNoDelay(true)
  return client
}

/** One command on the open connection, its output collected; the channel is closed if it outlives `timeoutMs`. */
function rawRun(client: ssh2.Client, command: string, timeoutMs: number): Promise<GuestResult> {
  return new Promise<GuestResult>((resolve, reject) => {
    client.exec(command, (error, channel) => {
      if (error) return reject(error)
      let stdout = ''
      let stderr = ''
      let exitCode: number | null = null
      const timer = setTimeout(() => {
        channel.close()
        reject(new Error(`'${command}' did not finish within ${timeoutMs} ms`))
      }, timeoutMs)
      channel.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
      channel.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      channel.on('exit', (code: number | null) => (exitCode = code))
      channel.on('close', () => {
        clearTimeout(timer)
        resolve({ exitCode, stdout, stderr })
      })
    })
  })
}
