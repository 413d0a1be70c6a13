import { attachmentNamed } from '../network-choice.js'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HypervisorError, SnapshotError } from '../../errors.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import type { Snapshotting, Suspending } from '../capabilities.js'
import type { ConsoleEndpoint, ExitInfo, Hypervisor, SnapshotInfo, SnapshotOptions, VmHandle, VmState, VmStatus } from '../hypervisor.js'

/** Stands for everything inside a guest: tests of the layers above write to it and check that a restore brings it back. */
export type NoopGuestState = Record<string, string>

interface NoopVm {
  status: VmStatus
  settleExit: (info: ExitInfo) => void
  guest: NoopGuestState
  snapshots: Map<string, { info: SnapshotInfo; guest: NoopGuestState }>
}

const externalStateFile = 'noop-state.json'

/**
 * An in-memory backend for unit tests of the layers above: it keeps lifecycle state and
 * enforces the same transitions as a real backend, but runs nothing and offers no SSH.
 */
export class NoopHypervisor implements Hypervisor, Suspending, Snapshotting {
  readonly name = 'noop' as const
  private readonly vms = new Map<string, NoopVm>()
  /** Every call, in order, for assertions. */
  readonly calls: string[] = []

  async prepare(spec: ResolvedSpec): Promise<VmHandle> {
    const id = randomBytes(4).toString('hex')
    let settleExit!: (info: ExitInfo) => void
    const exited = new Promise<ExitInfo>((resolve) => (settleExit = resolve))
    const guest = spec.restoreFrom ? await readExternal(spec.restoreFrom) : {}
    this.vms.set(id, { status: 'prepared', settleExit, guest, snapshots: new Map() })
    this.calls.push(`prepare ${spec.name}${spec.restoreFrom ? ' from snapshot' : ''}`)
    return { id, name: spec.name, backend: 'noop', spec, ssh: undefined, readyMarker: undefined, failureMarker: undefined, accel: 'none', restoredFrom: spec.restoreFrom, exited }
  }

  async start(vm: VmHandle): Promise<void> {
    this.transition(vm, 'start', ['prepared', 'stopped'], 'running')
  }

  async stop(vm: VmHandle): Promise<void> {
    const record = this.vms.get(vm.id)
    this.calls.push(`stop ${vm.name}`)
    if (!record || record.status === 'stopped' || record.status === 'prepared') return
    record.status = 'stopped'
    record.settleExit({ exitCode: 0, signal: null, requested: true, stopMethod: 'powerdown', stderr: '' })
  }

  async suspend(vm: VmHandle): Promise<void> {
    this.transition(vm, 'suspend', ['running'], 'paused')
  }

  async resume(vm: VmHandle): Promise<void> {
    this.transition(vm, 'resume', ['paused'], 'running')
  }

  async destroy(vm: VmHandle): Promise<void> {
    const record = this.vms.get(vm.id)
    this.calls.push(`destroy ${vm.name}`)
    if (!record) return
    record.settleExit({ exitCode: 0, signal: null, requested: true, stopMethod: 'sigterm', stderr: '' })
    this.vms.delete(vm.id)
  }

  async state(vm: VmHandle): Promise<VmState> {
    return { status: this.vms.get(vm.id)?.status ?? 'destroyed' }
  }

  async guestIp(vm: VmHandle, network?: string): Promise<string> {
    this.lookUp(vm)
    if (network === undefined && vm.spec.networks.length === 0) return '192.0.2.1'
    return attachmentNamed(vm, network).ipv4
  }

  consoleEndpoint(): ConsoleEndpoint {
    return { kind: 'none' }
  }

  async consoleTail(): Promise<string> {
    return ''
  }

  async snapshot(vm: VmHandle, name: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    this.calls.push(`snapshot ${vm.name} ${name}`)
    const record = this.lookUp(vm)
    const kind = options.kind ?? 'internal'
    const path = kind === 'external' ? (options.dir ?? `/noop/${vm.id}/${name}`) : undefined
    if (kind === 'external' && options.dir) {
      await mkdir(options.dir, { mode: 0o700 })
      await writeFile(join(options.dir, externalStateFile), JSON.stringify(record.guest))
    }
    const info: SnapshotInfo = { name, kind, path, createdAt: new Date() }
    record.snapshots.set(name, { info, guest: { ...record.guest } })
    return info
  }

  async restore(vm: VmHandle, name: string): Promise<void> {
    this.calls.push(`restore ${vm.name} ${name}`)
    const record = this.lookUp(vm)
    const snapshot = record.snapshots.get(name)
    if (!snapshot) throw new SnapshotError('no such snapshot in this VM', name, { vm: vm.name })
    record.guest = { ...snapshot.guest }
    record.status = 'running'
  }

  async listSnapshots(vm: VmHandle): Promise<SnapshotInfo[]> {
    return [...this.lookUp(vm).snapshots.values()].map((snapshot) => snapshot.info)
  }

  /** The stand-in for the guest's contents, for tests to change and inspect. */
  guestState(vm: VmHandle): NoopGuestState {
    return this.lookUp(vm).guest
  }

  /** How many VMs it holds now (not destroyed). */
  get liveCount(): number {
    return this.vms.size
  }

  private transition(vm: VmHandle, operation: string, from: VmStatus[], to: VmStatus): void {
    this.calls.push(`${operation} ${vm.name}`)
    const record = this.lookUp(vm)
    if (!from.includes(record.status)) throw new HypervisorError(`cannot ${operation} while ${record.status}`, { vm: vm.name })
    record.status = to
  }

  private lookUp(vm: VmHandle): NoopVm {
    const record = this.vms.get(vm.id)
    if (!record) throw new HypervisorError('was destroyed, or was not prepared by this backend', { vm: vm.name })
    return record
  }
}


async function readExternal(dir: string): Promise<NoopGuestState> {
  try {
    return JSON.parse(await readFile(join(dir, externalStateFile), 'utf8')) as NoopGuestState
  } catch (error) {
    throw new SnapshotError(`${dir} holds no saved noop state`, dir, { cause: error })
  }
}
