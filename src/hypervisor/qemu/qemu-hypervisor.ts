import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { HypervisorError } from '../../errors.js'
import { acceleratorVerdict, chooseAccelerator, requireBinary } from '../../host/accelerator.js'
import { findBinary } from '../../host/find-binary.js'
import { freeLoopbackPort } from '../../host/free-port.js'
import { runDir } from '../../host/run-dir.js'
import type { BootableImage } from '../../images/bootable-image.js'
import { hostnameFor, writeSeedIso } from '../../images/nocloud-seed.js'
import { resolveImage } from '../../images/resolve-image.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import { generateKeyPair, runClientKey } from '../../ssh/keys.js'
import { consoleLogTail } from '../console-text.js'
import type { ConsoleEndpoint, ExitInfo, Feature, Hypervisor, PrepareOptions, VmHandle, VmState } from '../hypervisor.js'
import { buildQemuArgv, type QemuLaunch } from './qemu-argv.js'
import { QmpClient } from './qmp-client.js'
import { spawnQemu, type QemuProcess } from './qemu-process.js'

const guestAddress = '10.0.2.15'
const forcedStopGraceMs = 2_000
const portAttempts = 4

interface QemuVm {
  handle: VmHandle
  dir: string
  launch: QemuLaunch
  image: BootableImage
  process?: QemuProcess
  qmp?: QmpClient
  destroyed: boolean
  settleExit: (info: ExitInfo) => void
}

/** Runs each VM as its own QEMU process, driven by argv arrays and QMP over a unix socket. */
export class QemuHypervisor implements Hypervisor {
  readonly name = 'qemu' as const
  readonly features: ReadonlySet<Feature> = new Set<Feature>(['suspend', 'ssh', 'console'])
  private readonly vms = new Map<string, QemuVm>()

  async prepare(spec: ResolvedSpec, options: PrepareOptions = {}): Promise<VmHandle> {
    const qemu = requireBinary(await findBinary('qemu-system-x86_64'), 'qemu-system-x86_64', 'qemu-system-x86')
    const qemuImg = requireBinary(await findBinary('qemu-img'), 'qemu-img', 'qemu-utils')
    requireBinary(await findBinary('setpriv'), 'setpriv', 'util-linux')
    const image = await resolveImage(spec, options)
    const accel = await chooseAccelerator(spec.accel, () => acceleratorVerdict({ qemu, kernel: image.kernel ?? '/boot/vmlinuz' }))
    const id = randomBytes(4).toString('hex')
    const dir = await (await runDir()).vmDir(id)
    try {
      const overlay = join(dir, 'disk.qcow2')
      await execa(qemuImg, ['create', '-q', '-f', 'qcow2', '-b', image.disk, '-F', 'qcow2', overlay], { stdin: 'ignore' })
      const clientKey = await runClientKey()
      const hostKey = generateKeyPair(`vmharness-host-${id}`)
      const seedIso = join(dir, 'seed.iso')
      await writeSeedIso(seedIso, { instanceId: `vmharness-${id}`, hostname: hostnameFor(spec.name), authorizedKeys: [clientKey.publicKey], hostKey })
      const launch: QemuLaunch = {
        accel,
        machine: spec.machine,
        memoryMiB: spec.memory,
        cpus: spec.cpus,
        kernel: image.kernel ?? '',
        initrd: image.initrd,
        kernelArgs: [...image.kernelArgs, ...machineKernelArgs(spec, accel), ...spec.kernelArgs],
        disk: overlay,
        seedIso,
        sshHostPort: 0,
        qmpSocket: join(dir, 'qmp.sock'),
        consoleSocket: join(dir, 'console.sock'),
        consoleLog: join(dir, 'console.log'),
      }
      let settleExit!: (info: ExitInfo) => void
      const exited = new Promise<ExitInfo>((resolve) => (settleExit = resolve))
      const handle: VmHandle = {
        id,
        name: spec.name,
        backend: 'qemu',
        spec,
        ssh: { host: '127.0.0.1', port: 0, user: image.sshUser, hostKey: hostKey.publicKey },
        readyMarker: image.readyMarker,
        accel,
        exited,
      }
      this.vms.set(id, { handle, dir, launch, image, destroyed: false, settleExit })
      return handle
    } catch (error) {
      await rm(dir, { recursive: true, force: true })
      throw error
    }
  }

  async start(vm: VmHandle, options: { signal?: AbortSignal } = {}): Promise<void> {
    const record = this.record(vm)
    if (record.process) throw new HypervisorError('is already started', { vm: vm.name })
    const qemu = requireBinary(await findBinary('qemu-system-x86_64'), 'qemu-system-x86_64', 'qemu-system-x86')
    const setpriv = requireBinary(await findBinary('setpriv'), 'setpriv', 'util-linux')
    for (let attempt = 1; ; attempt++) {
      const port = await freeLoopbackPort()
      record.launch.sshHostPort = port
      ;(vm.ssh as { port: number }).port = port
      const process = await spawnQemu(setpriv, qemu, buildQemuArgv(record.launch), record.dir)
      record.process = process
      try {
        record.qmp = await this.connectMonitor(record, process, options.signal)
        void process.exited.then((info) => {
          record.qmp?.close()
          record.settleExit(info)
        })
        return
      } catch (error) {
        process.kill('SIGKILL')
        const info = await process.exited
        record.process = undefined
        if (/host forwarding rule|Address already in use/.test(info.stderr) && attempt < portAttempts) continue
        throw new HypervisorError(`QEMU failed to start: ${firstLines(info.stderr) || (error as Error).message}`, {
          vm: vm.name,
          cause: error,
          consoleTail: await consoleLogTail(record.launch.consoleLog, 20),
          consoleLogPath: record.launch.consoleLog,
        })
      }
    }
  }

  private async connectMonitor(record: QemuVm, process: QemuProcess, signal?: AbortSignal): Promise<QmpClient> {
    const exitedEarly = process.exited.then((info) => {
      throw new Error(`QEMU exited during start-up (${describeExit(info)})`)
    })
    return Promise.race([QmpClient.connect(record.launch.qmpSocket, { timeoutMs: 30_000, signal }), exitedEarly])
  }

  async stop(vm: VmHandle, timeoutMs: number): Promise<void> {
    const record = this.record(vm, { allowDestroyed: true })
    const process = record.process
    if (!process || (await isSettled(process.exited))) return
    process.markRequested()
    if (record.qmp && !record.qmp.closed && timeoutMs > 0) {
      await record.qmp.execute('system_powerdown', undefined, 5_000).catch(() => undefined)
      if (await exitsWithin(process, timeoutMs)) return
    }
    process.kill('SIGTERM')
    if (await exitsWithin(process, forcedStopGraceMs)) return
    process.kill('SIGKILL')
    await process.exited
  }

  async suspend(vm: VmHandle): Promise<void> {
    await this.monitor(vm).execute('stop')
  }

  async resume(vm: VmHandle): Promise<void> {
    await this.monitor(vm).execute('cont')
  }

  async destroy(vm: VmHandle): Promise<void> {
    const record = this.vms.get(vm.id)
    if (!record || record.destroyed) return
    record.destroyed = true
    await this.stop(vm, 0)
    record.qmp?.close()
    if (!record.process) record.settleExit({ exitCode: null, signal: null, requested: true, stderr: '' })
    await rm(record.dir, { recursive: true, force: true })
    this.vms.delete(vm.id)
  }

  async state(vm: VmHandle): Promise<VmState> {
    const record = this.vms.get(vm.id)
    if (!record || record.destroyed) return { status: 'destroyed' }
    const process = record.process
    if (!process) return { status: 'prepared' }
    if (await isSettled(process.exited)) {
      const info = await process.exited
      return { status: info.requested || info.exitCode === 0 ? 'stopped' : 'crashed', detail: describeExit(info) }
    }
    try {
      const status = await this.monitor(vm).execute<{ status: string; running: boolean }>('query-status', undefined, 5_000)
      return { status: status.running ? 'running' : 'paused', pid: process.pid, detail: status.status }
    } catch {
      return { status: 'running', pid: process.pid, detail: 'monitor not answering' }
    }
  }

  async guestIp(vm: VmHandle): Promise<string> {
    this.record(vm)
    return guestAddress
  }

  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    const record = this.record(vm)
    return { kind: 'unix-socket', path: record.launch.consoleSocket, logPath: record.launch.consoleLog }
  }

  async consoleTail(vm: VmHandle, lines: number): Promise<string> {
    const record = this.vms.get(vm.id)
    return record ? consoleLogTail(record.launch.consoleLog, lines) : ''
  }

  /** The full command line this VM runs (or would run) with, for reproducing it by hand. */
  commandLine(vm: VmHandle, sshHostPort?: number): string[] {
    const record = this.record(vm)
    return buildQemuArgv({ ...record.launch, sshHostPort: sshHostPort ?? record.launch.sshHostPort })
  }

  /** The QEMU process's stderr so far (for error messages). */
  processOutput(vm: VmHandle): string {
    return this.vms.get(vm.id)?.process?.stderr() ?? ''
  }

  private monitor(vm: VmHandle): QmpClient {
    const record = this.record(vm)
    if (!record.qmp || record.qmp.closed) throw new HypervisorError('is not running (no QMP monitor)', { vm: vm.name })
    return record.qmp
  }

  private record(vm: VmHandle, options: { allowDestroyed?: boolean } = {}): QemuVm {
    const record = this.vms.get(vm.id)
    if (!record) {
      if (options.allowDestroyed) return { destroyed: true } as QemuVm
      throw new HypervisorError('was destroyed, or was not prepared by this backend', { vm: vm.name })
    }
    if (record.destroyed && !options.allowDestroyed) throw new HypervisorError('was destroyed', { vm: vm.name })
    return record
  }
}

/** microvm under TCG hangs in some boots while calibrating the TSC unless told its frequency. */
function machineKernelArgs(spec: ResolvedSpec, accel: 'kvm' | 'tcg'): string[] {
  if (spec.machine !== 'microvm' || accel !== 'tcg') return []
  return [`tsc_early_khz=${hostTscKhz()}`]
}

let tscKhz: number | undefined
function hostTscKhz(): number {
  if (tscKhz === undefined) {
    const text = readFileSyncOrEmpty('/proc/cpuinfo')
    const mhz = Number(/cpu MHz\s*:\s*([\d.]+)/.exec(text)?.[1] ?? '2000')
    tscKhz = Math.round(mhz * 1000)
  }
  return tscKhz
}

function readFileSyncOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  const pending = Symbol('pending')
  return (await Promise.race([promise, Promise.resolve(pending)])) !== pending
}

async function exitsWithin(process: QemuProcess, ms: number): Promise<boolean> {
  const timer = sleep(ms).then(() => false)
  return Promise.race([process.exited.then(() => true), timer])
}

function describeExit(info: ExitInfo): string {
  return info.signal ? `signal ${info.signal}` : `exit code ${info.exitCode}`
}

function firstLines(text: string): string {
  return text.trim().split('\n').slice(0, 5).join('\n')
}
