import { stderr as ownStderr } from 'node:process'
import { SnapshotError, HypervisorError } from '../../errors.js'
import { freeLoopbackPort } from '../../host/free-port.js'
import { consoleLogTail } from '../console-text.js'
import { describeExit } from '../hypervisor.js'
import { keepMode } from '../keep/keep-mode.js'
import { proxyBridgeCommand, sharedOutsideProxy } from '../../network/outside-proxy.js'
import type { QemuHostTools } from './host-tools.js'
import { migrateFromInheritedFd, openStateFile } from './migration-file.js'
import { buildQemuArgv } from './qemu-argv.js'
import { spawnQemu, type QemuProcess } from './qemu-process.js'
import type { QemuVm } from './qemu-vm.js'
import { QmpClient } from './qmp-client.js'

const portAttempts = 4
const restoreTimeoutMs = 120_000

/**
 * Spawns QEMU (on a free port, retried when another process takes it first), connects its QMP
 * monitor, and loads the VM's incoming state when there is one.
 */
export async function launchQemu(vmName: string, record: QemuVm, tools: QemuHostTools, signal?: AbortSignal, options: { leavePaused?: boolean } = {}): Promise<void> {
  const incoming = record.incomingState
  record.launch.incoming = incoming !== undefined
  record.launch.diskIo = tools.diskIo
  if (record.launch.outsideAccess) record.launch.outsideProxyCommand = proxyBridgeCommand((await sharedOutsideProxy()).socketPath)
  for (let attempt = 1; ; attempt++) {
    record.launch.sshHostPort = record.ssh.port = await freeLoopbackPort()
    const state = incoming ? await openStateFile(incoming) : undefined
    let process: QemuProcess
    try {
      process = await spawnQemu(tools.setpriv, tools.qemu, buildQemuArgv(record.launch), record.dir, { inheritedFd: state?.fd, detached: keepMode() === 'on-failure' })
    } finally {
      await state?.close()
    }
    record.process = process
    try {
      const qmp = await connectMonitor(record.launch.qmpSocket, process, signal)
      record.qmp = qmp
      void process.exited.then((info) => {
        qmp.close()
        if (record.process === process) record.settleExit(info)
      })
      if (incoming) await loadIncoming(qmp, process, options.leavePaused ?? false)
      record.incomingState = undefined
      return
    } catch (error) {
      process.kill('SIGKILL')
      const info = await process.exited
      record.process = undefined
      record.qmp?.close()
      if (/host forwarding rule|Address already in use/.test(info.stderr) && attempt < portAttempts) {
        // Another process took the port between choosing it and QEMU binding it: choose again.
        ownStderr.write(`vmharness: port ${record.launch.sshHostPort} was taken before QEMU could bind it; retrying on another (attempt ${attempt + 1})\n`)
        continue
      }
      const detail = info.stderr.trim() ? describeExit(info, 5) : (error as Error).message
      if (incoming) {
        throw new SnapshotError(`QEMU could not load the saved state ${incoming}: ${detail}`, incoming, { vm: vmName, cause: error })
      }
      throw new HypervisorError(`QEMU failed to start: ${detail}`, { vm: vmName, cause: error, consoleTail: await consoleLogTail(record.launch.consoleLog, 20) })
    }
  }
}

function connectMonitor(qmpSocket: string, process: QemuProcess, signal?: AbortSignal): Promise<QmpClient> {
  return unlessExited(process, 'during start-up', QmpClient.connect(qmpSocket, { timeoutMs: 30_000, signal }))
}

async function loadIncoming(qmp: QmpClient, process: QemuProcess, leavePaused: boolean): Promise<void> {
  await unlessExited(process, 'while loading', migrateFromInheritedFd(qmp, restoreTimeoutMs))
  if (!leavePaused) await qmp.execute('cont')
}

/** Rejects at once with QEMU's exit (and its stderr) when the process ends before `work` settles. */
async function unlessExited<T>(process: QemuProcess, during: string, work: Promise<T>): Promise<T> {
  const exitedEarly = process.exited.then((info) => {
    throw new Error(`QEMU exited ${during} (${describeExit(info, 5)})`)
  })
  try {
    return await Promise.race([work, exitedEarly])
  } finally {
    exitedEarly.catch(() => undefined)
  }
}
