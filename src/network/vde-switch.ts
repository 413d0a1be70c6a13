import { writeFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { execa, type ResultPromise } from 'execa'
import { NetworkError } from '../errors.js'
import { VdeMgmt } from './vde-mgmt.js'

const stderrLimit = 16 * 1024
const stopGraceMs = 2_000

/** Ports 0..254: machine n plugs into port n, and port 0 stays unused. */
export const switchPortCount = 255

export interface SwitchExit {
  exitCode: number | null
  signal: string | null
  /** Whether the harness asked for the exit (destroy) rather than the switch ending by itself. */
  requested: boolean
  stderr: string
}

export interface VdeSwitch {
  pid: number
  /** The data socket directory: QEMU's `-netdev vde,sock=`. */
  dataSocket: string
  mgmt: VdeMgmt
  exited: Promise<SwitchExit>
  /** Set once the process has ended. */
  readonly exitInfo: SwitchExit | undefined
  /** Ends the switch (it removes its sockets), SIGKILL if it lingers. Safe to call twice. */
  stop(): Promise<SwitchExit>
}

export interface SwitchTools {
  setpriv: string
  vdeSwitch: string
}

export interface StartSwitchOptions {
  /** The network's name, for errors. */
  network: string
  signal?: AbortSignal
  timeoutMs?: number
}

/** Where a switch whose files are in `dir` keeps its data sockets (`ctl` and one per client). */
export function dataSocketDir(dir: string): string {
  return join(dir, 'sw')
}

/**
 * A switch, not a hub, so that ports can be put in VLANs. The rc file is /dev/null so that a
 * ~/.vde2/vde_switch.rc cannot change it.
 */
export function vdeSwitchArgs(dir: string): string[] {
  return [
    ['--sock', dataSocketDir(dir)],
    ['--mode', '0600'],
    ['--dirmode', '0700'],
    ['--mgmt', join(dir, 'mgmt')],
    ['--mgmtmode', '0600'],
    ['--numports', String(switchPortCount)],
    ['--rcfile', '/dev/null'],
  ].flat()
}

/**
 * Starts a vde_switch whose sockets live in `dir` (a fresh 0700 directory), records its pid there
 * for the sweep, and resolves once its management socket answers.
 *
 * In the foreground, not `--daemon` (a daemon escapes the parent-death signal), through `setpriv
 * --pdeathsig KILL` like QEMU. Its stdin is a pipe that nothing writes to: a foreground vde_switch
 * reads commands from stdin and exits at end of file, so /dev/null would end it at once, and the
 * pipe ends it too when this process dies however it dies.
 */
export async function startVdeSwitch(tools: SwitchTools, dir: string, options: StartSwitchOptions): Promise<VdeSwitch> {
  const subprocess: ResultPromise = execa(tools.setpriv, ['--pdeathsig', 'KILL', '--', tools.vdeSwitch, ...vdeSwitchArgs(dir)], {
    reject: false,
    stdin: 'pipe',
    stdout: 'ignore',
    stderr: 'pipe',
    buffer: false,
  })
  let stderr = ''
  subprocess.stderr?.setEncoding('utf8')
  subprocess.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-stderrLimit)
  })
  let requested = false
  let exitInfo: SwitchExit | undefined
  const ended = (exitCode: number | undefined, signal: string | undefined): SwitchExit =>
    (exitInfo = { exitCode: exitCode ?? null, signal: signal ?? null, requested, stderr })
  const exited: Promise<SwitchExit> = subprocess.then(
    (result) => ended(result.exitCode, result.signal),
    (error: { exitCode?: number; signal?: string }) => ended(error.exitCode, error.signal),
  )
  const pid = subprocess.pid
  if (pid === undefined) {
    const info = await exited
    throw new NetworkError(`could not start ${tools.vdeSwitch}: ${describeSwitchExit(info)}`, options.network)
  }
  // Neither the switch nor its pipes keep this process alive: when it exits, the run directory's exit handler kills the switch.
  subprocess.unref()
  for (const stream of [subprocess.stdin, subprocess.stderr]) (stream as Socket | null)?.unref()

  let stopping: Promise<SwitchExit> | undefined
  const stop = (): Promise<SwitchExit> => {
    stopping ??= (async () => {
      if (exitInfo) return exitInfo
      requested = true
      subprocess.stdin?.end()
      const timer = setTimeout(() => subprocess.kill('SIGKILL'), stopGraceMs)
      const info = await exited
      clearTimeout(timer)
      return info
    })()
    return stopping
  }

  try {
    await writeFile(join(dir, 'vde.pid'), String(pid), { mode: 0o600 })
    const mgmt = await connectWhileRunning(join(dir, 'mgmt'), exited, options)
    return {
      pid,
      dataSocket: dataSocketDir(dir),
      mgmt,
      exited,
      get exitInfo() {
        return exitInfo
      },
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}

async function connectWhileRunning(path: string, exited: Promise<SwitchExit>, options: StartSwitchOptions): Promise<VdeMgmt> {
  // Stops trying when the caller aborts or the switch ends (AbortSignal.any is newer than Node 20.0).
  const stopTrying = new AbortController()
  let switchEnded = false
  const onAbort = () => stopTrying.abort()
  options.signal?.addEventListener('abort', onAbort, { once: true })
  void exited.then(() => {
    switchEnded = true
    stopTrying.abort()
  })
  try {
    return await VdeMgmt.connect(path, { network: options.network, timeoutMs: options.timeoutMs ?? 10_000, signal: stopTrying.signal })
  } catch (error) {
    options.signal?.throwIfAborted()
    if (switchEnded) throw new NetworkError(`vde_switch ended before it answered: ${describeSwitchExit(await exited)}`, options.network, { cause: error })
    throw error
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
  }
}

export function describeSwitchExit(info: SwitchExit): string {
  const ending = info.signal ? `signal ${info.signal}` : `exit code ${info.exitCode}`
  const stderr = info.stderr.trim().split('\n').slice(-5).join('\n')
  return stderr ? `${ending}: ${stderr}` : ending
}
