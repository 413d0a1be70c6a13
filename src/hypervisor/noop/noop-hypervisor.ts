import { randomBytes } from 'node:crypto'
import { HypervisorError } from '../../errors.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import type { ConsoleEndpoint, ExitInfo, Feature, Hypervisor, VmHandle, VmState, VmStatus } from '../hypervisor.js'

interface NoopVm {
  status: VmStatus
  settleExit: (info: ExitInfo) => void
}

/**
 * An in-memory backend for unit tests of the layers above: it keeps lifecycle state and
 * enforces the same transitions as a real backend, but runs nothing and offers no SSH.
 */
export class NoopHypervisor implements Hypervisor {
  readonly name = 'noop' as const
  readonly features: ReadonlySet<Feature> = new Set<Feature>(['suspend'])
  private readonly vms = new Map<string, NoopVm>()
  /** Every call, in order, for assertions. */
  readonly calls: string[] = []

  async prepare(spec: ResolvedSpec): Promise<VmHandle> {
    const id = randomBytes(4).toString('hex')
    let settleExit!: (info: ExitInfo) => void
    const exited = new Promise<ExitInfo>((resolve) => (settleExit = resolve))
    this.vms.set(id, { status: 'prepared', settleExit })
    this.calls.push(`prepare ${spec.name}`)
    return { id, name: spec.name, backend: 'noop', spec, ssh: undefined, readyMarker: undefined, failureMarker: undefined, accel: 'none', exited }
  }

  async start(vm: VmHandle): Promise<void> {
    this.transition(vm, 'start', ['prepared', 'stopped'], 'running')
  }

  async stop(vm: VmHandle): Promise<void> {
    const record = this.vms.get(vm.id)
    this.calls.push(`stop ${vm.name}`)
    if (!record || record.status === 'stopped' || record.status === 'prepared') return
    record.status = 'stopped'
    record.settleExit({ exitCode: 0, signal: null, requested: true, stderr: '' })
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
    record.settleExit({ exitCode: 0, signal: null, requested: true, stderr: '' })
    this.vms.delete(vm.id)
  }

  async state(vm: VmHandle): Promise<VmState> {
    return { status: this.vms.get(vm.id)?.status ?? 'destroyed' }
  }

  async guestIp(vm: VmHandle): Promise<string> {
    this.require(vm)
    return '192.0.2.1'
  }

  consoleEndpoint(): ConsoleEndpoint {
    return { kind: 'none' }
  }

  async consoleTail(): Promise<string> {
    return ''
  }

  /** How many VMs it holds now (not destroyed). */
  get liveCount(): number {
    return this.vms.size
  }

  private transition(vm: VmHandle, operation: string, from: VmStatus[], to: VmStatus): void {
    this.calls.push(`${operation} ${vm.name}`)
    const record = this.require(vm)
    if (!from.includes(record.status)) throw new HypervisorError(`cannot ${operation} while ${record.status}`, { vm: vm.name })
    record.status = to
  }

  private require(vm: VmHandle): NoopVm {
    const record = this.vms.get(vm.id)
    if (!record) throw new HypervisorError('was destroyed, or was not prepared by this backend', { vm: vm.name })
    return record
  }
}

