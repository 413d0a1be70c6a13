import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa, type ResultPromise } from 'execa'
import { HypervisorError } from '../../errors.js'
import { describeExit, type ExitInfo } from '../hypervisor.js'

const stderrLimit = 16 * 1024

export interface QemuProcess {
  pid: number
  exited: Promise<ExitInfo>
  /** Set once the process has ended. */
  readonly exitInfo: ExitInfo | undefined
  /** Marks the coming exit as asked for, then sends the signal. */
  kill(signal: 'SIGTERM' | 'SIGKILL'): void
  markRequested(): void
}

/**
 * Spawns QEMU through `setpriv --pdeathsig KILL`, so that it dies with the thread that spawned
 * it even when this process is SIGKILLed, and records its pid in the VM directory for the sweep.
 */
export async function spawnQemu(setpriv: string, qemu: string, argv: string[], vmDir: string, inheritedFd?: number): Promise<QemuProcess> {
  const subprocess: ResultPromise = execa(setpriv, ['--pdeathsig', 'KILL', '--', qemu, ...argv], {
    reject: false,
    // fd 3, when given, carries a saved state to `migrate-incoming fd:3`.
    // (execa's types do not list a number for fds above 2, but it passes one through to spawn as Node does.)
    stdio: (inheritedFd === undefined ? ['ignore', 'ignore', 'pipe'] : ['ignore', 'ignore', 'pipe', inheritedFd]) as ['ignore', 'ignore', 'pipe'],
    buffer: false,
    cleanup: true,
  })
  let stderr = ''
  subprocess.stderr?.setEncoding('utf8')
  subprocess.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-stderrLimit)
  })
  let requested = false
  let exitInfo: ExitInfo | undefined
  const exited: Promise<ExitInfo> = subprocess.then(
    (result) => (exitInfo = { exitCode: result.exitCode ?? null, signal: result.signal ?? null, requested, stderr }),
    (error: { exitCode?: number; signal?: string }) => (exitInfo = { exitCode: error.exitCode ?? null, signal: error.signal ?? null, requested, stderr }),
  )
  const pid = subprocess.pid
  if (pid === undefined) {
    const info = await exited
    throw new HypervisorError(`could not spawn QEMU through ${setpriv}: ${describeExit(info, 5)}`)
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
      subprocess.kill(signal)
    },
  }
}
