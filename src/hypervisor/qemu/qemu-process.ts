import { openSync, closeSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa, type ResultPromise } from 'execa'
import { HypervisorError } from '../../errors.js'
import { describeExit, type ExitInfo, type StopMethod } from '../hypervisor.js'

const stderrLimit = 16 * 1024

export interface QemuProcess {
  pid: number
  exited: Promise<ExitInfo>
  /** Set once the process has ended. */
  readonly exitInfo: ExitInfo | undefined
  /** Marks the coming exit as asked for, then sends the signal. */
  kill(signal: 'SIGTERM' | 'SIGKILL'): void
  markRequested(): void
  /** Whether it was started able to outlive this process. */
  readonly detached: boolean
  /** This process no longer waits for it, so can exit while it runs on (a kept VM). */
  unref(): void
}

export interface SpawnOptions {
  /** fd 3 of the child: a saved state for `migrate-incoming fd:3`. */
  inheritedFd?: number
  /**
   * Start QEMU so that it can outlive this process (VMHARNESS_KEEP): no parent-death signal, its
   * own session, stderr to a file rather than a pipe that would break when this process exits.
   */
  detached?: boolean
}

/**
 * Spawns QEMU through `setpriv --pdeathsig KILL`, so that it dies with the thread that spawned
 * it even when this process is SIGKILLed, and records its pid in the VM directory for the sweep.
 */
export async function spawnQemu(setpriv: string, qemu: string, argv: string[], vmDir: string, options: SpawnOptions = {}): Promise<QemuProcess> {
  const stderrFile = join(vmDir, 'qemu.stderr')
  const stderrFd = options.detached ? openSync(stderrFile, 'w', 0o600) : undefined
  const stdio = ['ignore', 'ignore', stderrFd ?? 'pipe', ...(options.inheritedFd === undefined ? [] : [options.inheritedFd])]
  const [file, args] = options.detached ? [qemu, argv] : [setpriv, ['--pdeathsig', 'KILL', '--', qemu, ...argv]]
  const subprocess: ResultPromise = execa(file, args, {
    reject: false,
    // (execa's types do not list a number for fds above 2, but it passes one through to spawn as Node does.)
    stdio: stdio as ['ignore', 'ignore', 'pipe'],
    buffer: false,
    cleanup: !options.detached,
    detached: options.detached,
  })
  if (stderrFd !== undefined) closeSync(stderrFd)
  let stderr = ''
  subprocess.stderr?.setEncoding('utf8')
  subprocess.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-stderrLimit)
  })
  const finalStderr = async () => (options.detached ? (await readFile(stderrFile, 'utf8').catch(() => '')).slice(-stderrLimit) : stderr)
  let requested = false
  let sentSignal: 'SIGTERM' | 'SIGKILL' | undefined
  let exitInfo: ExitInfo | undefined
  const ended = async (exitCode: number | undefined, signal: string | undefined): Promise<ExitInfo> => {
    // Read before awaiting anything: a signal sent after the process ended must not count.
    const stopMethod: StopMethod | undefined = requested ? (sentSignal === 'SIGKILL' ? 'sigkill' : sentSignal === 'SIGTERM' ? 'sigterm' : 'powerdown') : undefined
    return (exitInfo = { exitCode: exitCode ?? null, signal: signal ?? null, requested, stopMethod, stderr: await finalStderr() })
  }
  const exited: Promise<ExitInfo> = subprocess.then(
    (result) => ended(result.exitCode, result.signal),
    (error: { exitCode?: number; signal?: string }) => ended(error.exitCode, error.signal),
  )
  const pid = subprocess.pid
  if (pid === undefined) {
    const info = await exited
    throw new HypervisorError(`could not spawn ${file}: ${describeExit(info, 5)}`)
  }
  await writeFile(join(vmDir, 'qemu.pid'), String(pid), { mode: 0o600 })
  return {
    pid,
    exited,
    get exitInfo() {
      return exitInfo
    },
    markRequested: () => {
      requested = true
    },
    kill(signal) {
      requested = true
      if (exitInfo === undefined) sentSignal = signal
      subprocess.kill(signal)
    },
    detached: options.detached === true,
    unref() {
      subprocess.unref()
    },
  }
}
