import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { HypervisorError } from '../../errors.js'
import { acceleratorVerdict, chooseAccelerator } from '../../host/accelerator.js'
import { freeLoopbackPort } from '../../host/free-port.js'
import { locateRequired } from '../../host/requirements.js'
import { runDir } from '../../host/run-dir.js'
import { hostTscKhz } from '../../host/tsc-frequency.js'
import { hostnameFor, writeSeedIso } from '../../images/nocloud-seed.js'
import { resolveImage } from '../../images/resolve-image.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import { generateKeyPair, runClientKey } from '../../ssh/keys.js'
import { consoleLogTail } from '../console-text.js'
import { describeExit, type ConsoleEndpoint, type ExitInfo, type Feature, type Hypervisor, type PrepareOptions, type SshEndpoint, type VmHandle, type VmState } from '../hypervisor.js'
import { buildQemuArgv, type QemuLaunch } from './qemu-argv.js'
import { QmpClient } from './qmp-client.js'
import { spawnQemu, type QemuProcess } from './qemu-process.js'

const guestAddress = '10.0.2.15'
const forcedStopGraceMs = 2_000
const portAttempts = 4

interface HostTools {
  qemu: string
  qemuImg: string
  setpriv: string
}

interface QemuVm {
  dir: string
  launch: QemuLaunch
  /** The handle's own endpoint object: its port is filled in at start. */
  ssh: SshEndpoint
  process?: QemuProcess
  qmp?: QmpClient
  settleExit: (info: ExitInfo) => void
}

/** Runs each VM as its own QEMU process, driven by argv arrays and QMP over a unix socket. */
export class QemuHypervisor implements Hypervisor {
  readonly name = 'qemu' as const
  readonly features: ReadonlySet<Feature> = new Set<Feature>(['suspend', 'ssh', 'console'])
  private readonly vms = new Map<string, QemuVm>()
  private tools: Promise<HostTools> | undefined

  async prepare(spec: ResolvedSpec, options: PrepareOptions = {}): Promise<VmHandle> {
    const { qemu, qemuImg } = await this.hostTools()
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
      const ssh: SshEndpoint = { host: '127.0.0.1', port: 0, user: image.sshUser, hostKey: hostKey.publicKey }
      let settleExit!: (info: ExitInfo) => void
      const exited = new Promise<ExitInfo>((resolve) => (settleExit = resolve))
      this.vms.set(id, { dir, launch, ssh, settleExit })
      return { id, name: spec.name, backend: 'qemu', spec, ssh, readyMarker: image.readyMarker, failureMarker: image.failureMarker, accel, exited }
    } catch (error) {
      await rm(dir, { recursive: true, force: true })
      throw error
    }
  }

  async start(vm: VmHandle, options: { signal?: AbortSignal } = {}): Promise<void> {
    const record = this.record(vm)
    if (record.process) throw new HypervisorError('is already started', { vm: vm.name })
    const { qemu, setpriv } = await this.hostTools()
    for (let attempt = 1; ; attempt++) {
      record.launch.sshHostPort = record.ssh.port = await freeLoopbackPort()
      const process = await spawnQemu(setpriv, qemu, buildQemuArgv(record.launch), record.dir)
      record.process = process
      try {
        record.qmp = await connectMonitor(record.launch.qmpSocket, process, options.signal)
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
        throw new HypervisorError(`QEMU failed to start: ${info.stderr.trim() ? describeExit(info, 5) : (error as Error).message}`, {
          vm: vm.name,
          cause: error,
          consoleTail: await consoleLogTail(record.launch.consoleLog, 20),
        })
      }
    }
  }

  async stop(vm: VmHandle, timeoutMs: number): Promise<void> {
    const record = this.vms.get(vm.id)
    if (record) await stopProcess(record, timeoutMs)
  }

  async suspend(vm: VmHandle): Promise<void> {
    await this.monitor(vm).execute('stop')
  }

  async resume(vm: VmHandle): Promise<void> {
    await this.monitor(vm).execute('cont')
  }

  async destroy(vm: VmHandle): Promise<void> {
    const record = this.vms.get(vm.id)
    if (!record) return
    this.vms.delete(vm.id)
    await stopProcess(record, 0)
    record.qmp?.close()
    if (!record.process) record.settleExit({ exitCode: null, signal: null, requested: true, stderr: '' })
    await rm(record.dir, { recursive: true, force: true })
  }

  async state(vm: VmHandle): Promise<VmState> {
    const record = this.vms.get(vm.id)
    if (!record) return { status: 'destroyed' }
    const process = record.process
    if (!process) return { status: 'prepared' }
    const exit = process.exitInfo
    if (exit) return { status: exit.requested || exit.exitCode === 0 ? 'stopped' : 'crashed', detail: describeExit(exit) }
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
    const { launch } = this.record(vm)
    return { kind: 'unix-socket', path: launch.consoleSocket, logPath: launch.consoleLog }
  }

  async consoleTail(vm: VmHandle, lines: number): Promise<string> {
    const record = this.vms.get(vm.id)
    return record ? consoleLogTail(record.launch.consoleLog, lines) : ''
  }

  /** The full command line this VM runs (or would run) with, for reproducing it by hand. */
  commandLine(vm: VmHandle, sshHostPort?: number): string[] {
    const { launch } = this.record(vm)
    return buildQemuArgv({ ...launch, sshHostPort: sshHostPort ?? launch.sshHostPort })
  }

  private hostTools(): Promise<HostTools> {
    this.tools ??= (async () => ({ qemu: await locateRequired('qemu-system'), qemuImg: await locateRequired('qemu-img'), setpriv: await locateRequired('setpriv') }))()
    this.tools.catch(() => (this.tools = undefined))
    return this.tools
  }

  private monitor(vm: VmHandle): QmpClient {
    const record = this.record(vm)
    if (!record.qmp || record.qmp.closed) throw new HypervisorError('is not running (no QMP monitor)', { vm: vm.name })
    return record.qmp
  }

  private record(vm: VmHandle): QemuVm {
    const record = this.vms.get(vm.id)
    if (!record) throw new HypervisorError('was destroyed, or was not prepared by this backend', { vm: vm.name })
    return record
  }
}

function connectMonitor(qmpSocket: string, process: QemuProcess, signal?: AbortSignal): Promise<QmpClient> {
  const exitedEarly = process.exited.then((info) => {
    throw new Error(`QEMU exited during start-up (${describeExit(info)})`)
  })
  return Promise.race([QmpClient.connect(qmpSocket, { timeoutMs: 30_000, signal }), exitedEarly])
}

/** Graceful, then forced: ACPI power-off (when given time), SIGTERM, SIGKILL. */
async function stopProcess(record: QemuVm, timeoutMs: number): Promise<void> {
  const process = record.process
  if (!process || process.exitInfo) return
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

async function exitsWithin(process: QemuProcess, ms: number): Promise<boolean> {
  const timer = new AbortController()
  try {
    return await Promise.race([process.exited.then(() => true), sleep(ms, false, { signal: timer.signal })])
  } finally {
    timer.abort()
  }
}

/** microvm under TCG hangs in some boots while calibrating the TSC unless told its frequency. */
function machineKernelArgs(spec: ResolvedSpec, accel: 'kvm' | 'tcg'): string[] {
  return spec.machine === 'microvm' && accel === 'tcg' ? [`tsc_early_khz=${hostTscKhz()}`] : []
}
