import { randomBytes } from 'node:crypto'
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stderr as ownStderr } from 'node:process'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { HypervisorError, SnapshotError, SpecError } from '../../errors.js'
import { acceleratorVerdict, chooseAccelerator } from '../../host/accelerator.js'
import { freeLoopbackPort } from '../../host/free-port.js'
import { findGuestKernel } from '../../host/guest-kernel.js'
import { keepMode } from '../../host/keep-mode.js'
import { recordKept, type KeptVm } from '../../host/kept-vms.js'
import { locateRequired } from '../../host/requirements.js'
import { runDir } from '../../host/run-dir.js'
import { hostTscKhz } from '../../host/tsc-frequency.js'
import { hostnameFor, writeSeedIso } from '../../images/nocloud-seed.js'
import { resolveImage } from '../../images/resolve-image.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import { generateKeyPair, runClientKey } from '../../ssh/keys.js'
import { consoleLogTail } from '../console-text.js'
import {
  describeExit,
  type ConsoleEndpoint,
  type ExitInfo,
  type Feature,
  type Hypervisor,
  type PrepareOptions,
  type SnapshotInfo,
  type SnapshotOptions,
  type SshEndpoint,
  type VmHandle,
  type VmState,
} from '../hypervisor.js'
import { diskIoVerdict, type DiskIoMode } from './disk-io.js'
import { migrateFromInheritedFd, openStateFile } from './migration-file.js'
import { buildQemuArgv, type QemuLaunch } from './qemu-argv.js'
import { spawnQemu, type QemuProcess } from './qemu-process.js'
import { loadInternalSnapshot, saveExternalSnapshot, saveInternalSnapshot, type QemuSnapshot } from './qemu-snapshots.js'
import { QmpClient } from './qmp-client.js'
import { assertLaunchFits, readSavedState, savedStateFiles, type SavedState } from './saved-state.js'

const guestAddress = '10.0.2.15'
const forcedStopGraceMs = 2_000
const portAttempts = 4
const restoreTimeoutMs = 120_000

interface HostTools {
  qemu: string
  qemuImg: string
  setpriv: string
  diskIo: DiskIoMode
}

export interface QemuHypervisorOptions {
  /** 'auto' (default): io_uring where a probe shows this QEMU and host allow it, else threads. */
  diskIo?: DiskIoMode | 'auto'
}

export interface QemuVm {
  dir: string
  launch: QemuLaunch
  /** The handle's own endpoint object: its port is filled in at start. */
  ssh: SshEndpoint
  process?: QemuProcess
  qmp?: QmpClient
  settleExit: (info: ExitInfo) => void
  /** The block node on top of the disk chain: external snapshots push new ones. */
  diskNode: string
  /** What the top overlay's contents lie on, as a file outside the VM directory (the image, or a snapshot's frozen disk). */
  diskBacking: string
  /** The state file the next start loads instead of booting. */
  incomingState?: string
  snapshots: Map<string, QemuSnapshot>
  /** Counts files made in the VM directory (overlays, snapshot directories), for unique names. */
  serial: number
}

/** Runs each VM as its own QEMU process, driven by argv arrays and QMP over a unix socket. */
export class QemuHypervisor implements Hypervisor {
  readonly name = 'qemu' as const
  readonly features: ReadonlySet<Feature> = new Set<Feature>(['suspend', 'ssh', 'console', 'snapshot', 'keep'])
  private readonly vms = new Map<string, QemuVm>()
  private tools: Promise<HostTools> | undefined

  constructor(private readonly options: QemuHypervisorOptions = {}) {}

  async prepare(spec: ResolvedSpec, options: PrepareOptions = {}): Promise<VmHandle> {
    if (spec.restoreFrom) return this.prepareClone(spec, spec.restoreFrom)
    const { qemu, diskIo } = await this.hostTools()
    const image = await resolveImage(spec, options)
    const accel = await chooseAccelerator(spec.accel, async () => acceleratorVerdict({ qemu, kernel: image.kernel ?? (await findGuestKernel()) }))
    const id = randomBytes(4).toString('hex')
    const dir = await (await runDir()).vmDir(id)
    try {
      const overlay = join(dir, 'disk-0.qcow2')
      await this.createOverlay(image.disk, overlay)
      const clientKey = await runClientKey()
      const hostKey = generateKeyPair(`vmharness-host-${id}`)
      const seedIso = join(dir, 'seed.iso')
      await writeSeedIso(seedIso, { instanceId: `vmharness-${id}`, hostname: hostnameFor(spec.name), authorizedKeys: [clientKey.publicKey], hostKey })
      const launch = this.launchFor(dir, {
        accel,
        machine: spec.machine,
        memoryMiB: spec.memory,
        cpus: spec.cpus,
        kernel: image.kernel,
        initrd: image.initrd,
        kernelArgs: [...image.kernelArgs, ...machineKernelArgs(spec, accel), ...spec.kernelArgs],
        disk: overlay,
        seedIso,
        diskIo,
      })
      const ssh: SshEndpoint = { host: '127.0.0.1', port: 0, user: image.sshUser, privateKey: clientKey.privateKey, hostKey: hostKey.publicKey }
      return this.register(id, spec, { dir, launch, ssh, diskBacking: image.disk }, { readyMarker: image.readyMarker, failureMarker: image.failureMarker, readyCommand: image.readyCommand })
    } catch (error) {
      await rm(dir, { recursive: true, force: true })
      throw error
    }
  }

  /** A VM that starts from an external snapshot: its own overlay over the frozen disk, the saved devices and keys. */
  private async prepareClone(spec: ResolvedSpec, from: string): Promise<VmHandle> {
    const saved = await readSavedState(from)
    const accel = spec.accel === 'auto' ? saved.meta.launch.accel : spec.accel
    const wanted = { ...saved.meta.launch, accel, machine: spec.machine, memoryMiB: spec.memory, cpus: spec.cpus }
    assertLaunchFits(saved.meta, wanted, saved.meta.hasSeed)
    await this.hostTools()
    const id = randomBytes(4).toString('hex')
    const dir = await (await runDir()).vmDir(id)
    const launch = this.launchFor(dir, { ...wanted, disk: '', seedIso: undefined })
    const ssh: SshEndpoint = { host: '127.0.0.1', port: 0, user: saved.meta.ssh.user, privateKey: saved.clientKey, hostKey: saved.meta.ssh.hostKey }
    const handle = this.register(id, spec, { dir, launch, ssh, diskBacking: '' }, { readyMarker: saved.meta.readyMarker, failureMarker: saved.meta.failureMarker, restoredFrom: from })
    try {
      await this.loadOnNextLaunch(this.record(handle), saved)
      return handle
    } catch (error) {
      this.vms.delete(id)
      await rm(dir, { recursive: true, force: true })
      throw error
    }
  }

  /** Points the VM at a saved state: a fresh overlay over its frozen disk, its seed and console log, and its RAM for the next launch. */
  private async loadOnNextLaunch(record: QemuVm, saved: SavedState): Promise<void> {
    const overlay = join(record.dir, `disk-${++record.serial}.qcow2`)
    await this.createOverlay(join(saved.dir, savedStateFiles.disk), overlay)
    await removeOverlaysExcept(record.dir, overlay)
    record.launch.disk = overlay
    record.launch.seedIso = saved.meta.hasSeed ? join(saved.dir, savedStateFiles.seed) : undefined
    record.diskNode = 'disk0'
    record.diskBacking = join(saved.dir, savedStateFiles.disk)
    record.incomingState = join(saved.dir, savedStateFiles.state)
    await startConsoleLogFrom(saved.dir, record.launch.consoleLog)
  }

  private launchFor(dir: string, parts: Omit<QemuLaunch, 'sshHostPort' | 'qmpSocket' | 'consoleSocket' | 'consoleLog'>): QemuLaunch {
    return { ...parts, sshHostPort: 0, qmpSocket: join(dir, 'qmp.sock'), consoleSocket: join(dir, 'console.sock'), consoleLog: join(dir, 'console.log') }
  }

  private async createOverlay(base: string, overlay: string): Promise<void> {
    const { qemuImg } = await this.hostTools()
    await execa(qemuImg, ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay], { stdin: 'ignore' })
  }

  private register(
    id: string,
    spec: ResolvedSpec,
    parts: Pick<QemuVm, 'dir' | 'launch' | 'ssh' | 'incomingState' | 'diskBacking'>,
    guest: { readyMarker: string | undefined; failureMarker: string | undefined; readyCommand?: string; restoredFrom?: string },
  ): VmHandle {
    let settleExit!: (info: ExitInfo) => void
    const exited = new Promise<ExitInfo>((resolve) => (settleExit = resolve))
    this.vms.set(id, { ...parts, settleExit, diskNode: 'disk0', snapshots: new Map(), serial: 0 })
    return {
      id,
      name: spec.name,
      backend: 'qemu',
      spec,
      ssh: parts.ssh,
      readyMarker: guest.readyMarker,
      failureMarker: guest.failureMarker,
      readyCommand: guest.readyCommand,
      restoredFrom: guest.restoredFrom,
      accel: parts.launch.accel,
      exited,
    }
  }

  async start(vm: VmHandle, options: { signal?: AbortSignal } = {}): Promise<void> {
    const record = this.record(vm)
    if (record.process) throw new HypervisorError('is already started', { vm: vm.name })
    await this.launch(vm, record, options.signal)
  }

  /** Spawns QEMU (on a free port, retried when another process takes it first), and loads a saved state when there is one. */
  private async launch(vm: VmHandle, record: QemuVm, signal?: AbortSignal): Promise<void> {
    const { qemu, setpriv, diskIo } = await this.hostTools()
    const incoming = record.incomingState
    record.launch.incoming = incoming !== undefined
    record.launch.diskIo = diskIo
    for (let attempt = 1; ; attempt++) {
      record.launch.sshHostPort = record.ssh.port = await freeLoopbackPort()
      const state = incoming ? await openStateFile(incoming) : undefined
      let process: QemuProcess
      try {
        process = await spawnQemu(setpriv, qemu, buildQemuArgv(record.launch), record.dir, { inheritedFd: state?.fd, detached: keepMode() === 'on-failure' })
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
        if (incoming) await loadIncoming(qmp, process)
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
          throw new SnapshotError(`QEMU could not load the saved state ${incoming}: ${detail}`, incoming, { vm: vm.name, cause: error })
        }
        throw new HypervisorError(`QEMU failed to start: ${detail}`, { vm: vm.name, cause: error, consoleTail: await consoleLogTail(record.launch.consoleLog, 20) })
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

  /**
   * Leaves the VM running after this process ends, for a person to look into: it stops being
   * managed here (destroy no longer reaches it) and `vmharness ssh` finds it.
   */
  async keep(vm: VmHandle, reason: string): Promise<KeptVm> {
    const record = this.record(vm)
    const process = record.process
    if (!process || process.exitInfo) throw new HypervisorError('cannot be kept: it is not running', { vm: vm.name })
    if (!process.detached) throw new HypervisorError('cannot be kept: it was started without VMHARNESS_KEEP=on-failure, so it dies with this process', { vm: vm.name })
    const kept = await recordKept({ name: vm.name, id: vm.id, vmDir: record.dir, pid: process.pid, sshPort: record.ssh.port, sshUser: record.ssh.user, privateKey: record.ssh.privateKey, hostKey: record.ssh.hostKey, reason })
    this.vms.delete(vm.id)
    record.qmp?.close()
    process.forget()
    return kept
  }

  async snapshot(vm: VmHandle, name: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    checkSnapshotName(name)
    const record = this.record(vm)
    const qmp = this.monitor(vm)
    const kind = options.kind ?? 'internal'
    if (kind === 'external') {
      const { qemuImg } = await this.hostTools()
      const snapshot = await saveExternalSnapshot(record, qmp, qemuImg, name, options.dir ?? join(record.dir, `snapshot-${++record.serial}`), { readyMarker: vm.readyMarker, failureMarker: vm.failureMarker })
      record.snapshots.set(name, snapshot)
      return snapshot.info
    }
    if (options.dir) throw new SpecError('applies to external snapshots only', 'dir')
    const snapshot = await saveInternalSnapshot(record, qmp, name, record.snapshots.get(name))
    record.snapshots.set(name, snapshot)
    return snapshot.info
  }

  async restore(vm: VmHandle, name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const record = this.record(vm)
    const snapshot = record.snapshots.get(name)
    if (!snapshot) {
      const known = [...record.snapshots.keys()].map((n) => `'${n}'`).join(', ') || 'none'
      throw new SnapshotError(`no such snapshot in this VM (it has: ${known})`, name, { vm: vm.name })
    }
    if (snapshot.info.kind === 'internal') {
      await loadInternalSnapshot(record, this.monitor(vm), snapshot)
      return
    }
    await this.relaunchFrom(vm, record, snapshot.info.path ?? '', options.signal)
  }

  async listSnapshots(vm: VmHandle): Promise<SnapshotInfo[]> {
    return [...this.record(vm).snapshots.values()].map((snapshot) => snapshot.info)
  }

  /**
   * Restoring an external snapshot replaces the process: the old one is killed, a new one starts
   * on a fresh overlay over the frozen disk and loads the RAM state. Internal snapshots lived in
   * the old overlay and go with it.
   */
  private async relaunchFrom(vm: VmHandle, record: QemuVm, from: string, signal?: AbortSignal): Promise<void> {
    const saved = await readSavedState(from)
    const old = record.process
    record.process = undefined
    if (old && !old.exitInfo) {
      old.kill('SIGKILL')
      await old.exited
    }
    record.qmp?.close()
    record.qmp = undefined
    for (const [name, snapshot] of record.snapshots) if (snapshot.info.kind === 'internal') record.snapshots.delete(name)
    await this.loadOnNextLaunch(record, saved)
    await this.launch(vm, record, signal)
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
    // The seed tool is checked here too, so that a host without one fails before any file is made.
    this.tools ??= (async () => {
      await locateRequired('seed-iso-tool')
      const qemu = await locateRequired('qemu-system')
      const chosen = this.options.diskIo ?? 'auto'
      const diskIo = chosen === 'auto' ? (await diskIoVerdict(qemu)).mode : chosen
      return { qemu, qemuImg: await locateRequired('qemu-img'), setpriv: await locateRequired('setpriv'), diskIo }
    })()
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

async function loadIncoming(qmp: QmpClient, process: QemuProcess): Promise<void> {
  await unlessExited(process, 'while loading', migrateFromInheritedFd(qmp, restoreTimeoutMs))
  await qmp.execute('cont')
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

/** A restored guest prints nothing new at first: its log begins with what it printed before the save. */
async function startConsoleLogFrom(snapshotDir: string, consoleLog: string): Promise<void> {
  const before = await readFile(join(snapshotDir, savedStateFiles.console)).catch(() => Buffer.alloc(0))
  await writeFile(consoleLog, Buffer.concat([before, Buffer.from(`\n[vmharness: restored from ${snapshotDir}]\n`)]), { mode: 0o600 })
}

function checkSnapshotName(name: unknown): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 64 || /[\0/]/.test(name)) {
    throw new SpecError('must be 1 to 64 characters, without "/" or NUL', 'snapshot name')
  }
}

/** The VM directory keeps only the overlay in use; older ones belonged to states that are gone. */
async function removeOverlaysExcept(dir: string, keep: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    const path = join(dir, entry)
    if (/^disk-\d+\.qcow2$/.test(entry) && path !== keep) await rm(path, { force: true })
  }
}

function connectMonitor(qmpSocket: string, process: QemuProcess, signal?: AbortSignal): Promise<QmpClient> {
  return unlessExited(process, 'during start-up', QmpClient.connect(qmpSocket, { timeoutMs: 30_000, signal }))
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
