import { rm } from 'node:fs/promises'
import { HypervisorError } from '../../errors.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import type { Keeping, Linking, RestoreOptions, Snapshotting, Suspending } from '../capabilities.js'
import { attachmentNamed } from '../network-choice.js'
import { consoleLogTail } from '../console-text.js'
import {
  describeExit,
  type ConsoleEndpoint,
  type Hypervisor,
  type PrepareOptions,
  type SnapshotInfo,
  type SnapshotOptions,
  type StartVmOptions,
  type VmHandle,
  type VmState,
} from '../hypervisor.js'
import type { KeptVm } from '../keep/kept-vms.js'
import type { DiskIoMode } from './disk-io.js'
import { hostToolsLookup } from './host-tools.js'
import { keepRunning } from './keep-running.js'
import { launchQemu } from './launch.js'
import { checkSnapshotName, restoreSnapshot, takeSnapshot } from './named-snapshots.js'
import { buildQemuArgv, networkIds } from './qemu-argv.js'
import { QemuVms } from './qemu-vm.js'
import { stopProcess } from './stop-escalation.js'
import { prepareBoot, prepareClone } from './vm-preparation.js'

/** User-mode networking gives the guest this address (from its DHCP range, or set by the image). */
const managementAddress = '10.0.2.15'

export interface QemuHypervisorOptions {
  /** 'auto' (default): io_uring where a probe shows this QEMU and host allow it, else threads. */
  diskIo?: DiskIoMode | 'auto'
}

/** Runs each VM as its own QEMU process, driven by argv arrays and QMP over a unix socket. */
export class QemuHypervisor implements Hypervisor, Suspending, Snapshotting, Keeping, Linking {
  readonly name = 'qemu' as const
  private readonly vms = new QemuVms()
  private readonly hostTools: ReturnType<typeof hostToolsLookup>

  constructor(options: QemuHypervisorOptions = {}) {
    this.hostTools = hostToolsLookup(options.diskIo)
  }

  async prepare(spec: ResolvedSpec, options: PrepareOptions = {}): Promise<VmHandle> {
    const { record, handle } = spec.restoreFrom ? await prepareClone(spec, spec.restoreFrom, this.hostTools) : await prepareBoot(spec, options, await this.hostTools())
    this.vms.add(handle, record)
    return handle
  }

  async start(vm: VmHandle, options: StartVmOptions = {}): Promise<void> {
    const record = this.vms.lookUp(vm)
    if (record.process) throw new HypervisorError('is already started', { vm: vm.name })
    await launchQemu(vm.name, record, await this.hostTools(), options.signal, { leavePaused: options.leavePaused })
  }

  async stop(vm: VmHandle, timeoutMs: number): Promise<void> {
    const record = this.vms.find(vm)
    if (record) await stopProcess(record, timeoutMs)
  }

  async suspend(vm: VmHandle): Promise<void> {
    await this.vms.monitor(vm).execute('stop')
  }

  async resume(vm: VmHandle): Promise<void> {
    await this.vms.monitor(vm).execute('cont')
  }

  async destroy(vm: VmHandle): Promise<void> {
    const record = this.vms.find(vm)
    if (!record) return
    this.vms.delete(vm)
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
    const kept = await keepRunning(vm, this.vms.lookUp(vm), reason)
    this.vms.delete(vm)
    return kept
  }

  async snapshot(vm: VmHandle, name: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    checkSnapshotName(name)
    return takeSnapshot(vm, this.vms.lookUp(vm), name, options, this.hostTools)
  }

  async restore(vm: VmHandle, name: string, options: RestoreOptions = {}): Promise<void> {
    await restoreSnapshot(vm, this.vms.lookUp(vm), name, this.hostTools, options)
  }

  async listSnapshots(vm: VmHandle): Promise<SnapshotInfo[]> {
    return [...this.vms.lookUp(vm).snapshots.values()].map((snapshot) => snapshot.info)
  }

  async state(vm: VmHandle): Promise<VmState> {
    const record = this.vms.find(vm)
    if (!record) return { status: 'destroyed' }
    const process = record.process
    if (!process) return { status: 'prepared' }
    const exit = process.exitInfo
    if (exit) return { status: exit.requested || exit.exitCode === 0 ? 'stopped' : 'crashed', detail: describeExit(exit) }
    try {
      const status = await this.vms.monitor(vm).execute<{ status: string; running: boolean }>('query-status', undefined, 5_000)
      return { status: status.running ? 'running' : 'paused', pid: process.pid, detail: status.status }
    } catch {
      return { status: 'running', pid: process.pid, detail: 'monitor not answering' }
    }
  }

  async guestIp(vm: VmHandle, network?: string): Promise<string> {
    this.vms.lookUp(vm)
    if (network === undefined && vm.spec.networks.length === 0) return managementAddress
    return attachmentNamed(vm, network).ipv4
  }

  async setLink(vm: VmHandle, network: string, up: boolean): Promise<void> {
    const { index } = attachmentNamed(vm, network)
    await this.vms.monitor(vm).execute('set_link', { name: networkIds(index).device, up })
  }

  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    const { launch } = this.vms.lookUp(vm)
    return { kind: 'unix-socket', path: launch.consoleSocket, logPath: launch.consoleLog }
  }

  async consoleTail(vm: VmHandle, lines: number): Promise<string> {
    const record = this.vms.find(vm)
    return record ? consoleLogTail(record.launch.consoleLog, lines) : ''
  }

  /** The full command line this VM runs (or would run) with, for reproducing it by hand. */
  commandLine(vm: VmHandle, sshHostPort?: number): string[] {
    const { launch } = this.vms.lookUp(vm)
    return buildQemuArgv({ ...launch, sshHostPort: sshHostPort ?? launch.sshHostPort })
  }
}
