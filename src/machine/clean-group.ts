import { mkdir } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { ContentHash } from '../common/content-hash.js'
import { harnessVersion } from '../common/harness-version.js'
import { SnapshotError, SpecError } from '../errors.js'
import type { KeptVm } from '../hypervisor/keep/kept-vms.js'
import type { SnapshotKind } from '../hypervisor/hypervisor.js'
import { discardGolden, ensureGolden } from '../snapshots/golden-store.js'
import { resolveSpec, type VmSpec } from '../spec/vm-spec.js'
import { defaultSnapshotKind, type MachineConfig, type RollbackMode } from './clean-machine.js'
import { recipeGoldenKey } from './golden.js'
import { GroupInstance } from './group-instance.js'
import { memberAttachments, type GroupTopology, type TopologyMachine } from './group-topology.js'
import { defaultPoolSize } from './pool-size.js'
import { restoreTogether, snapshotTogether } from './vm-group.js'
import type { StartOptions, Vm } from './vm.js'
import { perVmOverheadMiB, WarmPool } from './warm-pool.js'

const cleanTag = 'clean'

/**
 * The machines of one group (they share networks) as one unit: one golden snapshot taken of all
 * of them at one instant, and for every test the whole group back in that state, on switches of
 * its own. The group counterpart of CleanMachine, with the same rollback modes and warm pool.
 */
export class CleanGroup {
  private current: GroupInstance | undefined
  private handedOut = false
  private started = false
  private pool: WarmPool<GroupInstance> | undefined
  private goldenDir: string | undefined
  private readonly retiring = new Set<Promise<void>>()
  /** Groups kept for debugging: their VMs are no longer ours, their switches are until close. */
  private readonly keptNetworks: GroupInstance[] = []
  readonly rollback: RollbackMode
  readonly snapshotKind: SnapshotKind
  private readonly configuredPool: number | undefined
  goldenBuilt: boolean | undefined

  constructor(
    readonly topology: GroupTopology,
    private readonly options: StartOptions = {},
  ) {
    const config = groupRollback(topology)
    this.rollback = config.rollback
    this.snapshotKind = config.snapshotKind
    this.configuredPool = config.pool
  }

  get names(): string[] {
    return this.topology.machines.map((machine) => machine.name)
  }

  /** The whole group, clean, for one test. */
  async acquire(signal?: AbortSignal): Promise<GroupInstance> {
    const options = { ...this.options, signal }
    // Not current while a new one is made: a failure then leaves no retired group to hand out next time.
    const used = this.current
    this.current = undefined
    if (!used) this.current = this.started ? await this.nextClean(undefined, options) : await this.first(options)
    else this.current = this.handedOut ? await this.nextClean(used, options) : used
    this.started = true
    this.handedOut = true
    for (const vm of this.current.members) vm.commands.length = 0
    return this.current
  }

  release(instance: GroupInstance): void {
    if (instance !== this.current || !this.pool) return
    this.current = undefined
    this.handBack(instance)
  }

  /**
   * Leaves the group's VMs running for debugging. Their switches stay up while this group is
   * open, and cannot outlive this process (QEMU does not reconnect to a new switch): a kept group
   * can talk among itself until the test run ends. A member that cannot be kept is destroyed.
   */
  async keep(instance: GroupInstance, reason: string): Promise<KeptVm[]> {
    if (instance === this.current) {
      this.current = undefined
      this.handedOut = false
    }
    this.pool?.forget(instance)
    const outcomes = await Promise.allSettled(instance.members.map((vm) => vm.keep(reason)))
    this.keptNetworks.push(instance)
    const failed = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected')
    if (failed) {
      await Promise.all(instance.members.map((vm) => vm.destroy()))
      throw failed.reason
    }
    return outcomes.map((outcome) => (outcome as PromiseFulfilledResult<KeptVm>).value)
  }

  async close(): Promise<void> {
    if (this.current) this.retire(this.current)
    this.current = undefined
    await this.pool?.close()
    await Promise.all(this.retiring)
    await Promise.all(this.keptNetworks.splice(0).map((instance) => instance.destroy()))
  }

  private async first(options: StartOptions): Promise<GroupInstance> {
    if (this.rollback === 'reboot') return this.bootAndSetUp(options)
    const instance = await this.fromGolden(options)
    try {
      this.pool = this.makePool(instance.members[0] as Vm)
      if (this.reloadsInPlace && !this.pool) await snapshotTogether(instance.members, cleanTag)
    } catch (error) {
      await instance.destroy()
      throw error
    }
    this.pool?.fill()
    return instance
  }

  private async fromGolden(options: StartOptions): Promise<GroupInstance> {
    const key = await this.goldenKey(options)
    for (let attempt = 1; ; attempt++) {
      const { entry, built } = await ensureGolden(
        key,
        { group: this.names, networks: this.topology.networks, version: harnessVersion() },
        async (snapshotDir) => {
          options.onProgress?.(`golden snapshot for group ${this.names.join(', ')}: booting and running setup`)
          const instance = await this.bootAndSetUp(options)
          try {
            await mkdir(snapshotDir, { mode: 0o700 })
            const dirOf = new Map(this.topology.machines.map((machine) => [machine.name, join(snapshotDir, memberDir(machine))]))
            await snapshotTogether(instance.members, 'golden', (vm) => ({ kind: 'external', dir: dirOf.get(vm.name) }))
            return instance
          } catch (error) {
            await instance.destroy()
            throw error
          }
        },
        options.signal,
      )
      this.goldenDir = entry.snapshotDir
      this.goldenBuilt = built !== undefined
      if (built) return built
      try {
        return await this.clone(options)
      } catch (error) {
        if (!(error instanceof SnapshotError) || attempt > 1) throw error
        options.onProgress?.(`golden snapshot ${entry.key} is unusable (${error.message.split('\n')[0]}); building it again`)
        await discardGolden(entry.key)
      }
    }
  }

  /** Every member's own key (its recipe with its NICs) and the topology: a change to any of them gives another. */
  private async goldenKey(options: StartOptions): Promise<string> {
    const hash = new ContentHash().text('kind', 'group')
    for (const machine of this.topology.machines) {
      const spec = { ...this.specOf(machine), name: machine.name, networks: memberAttachments(this.topology, machine, new Map()) }
      const key = await recipeGoldenKey({ spec, setup: machine.config.setup, setupKey: machine.config.setupKey }, options)
      hash.text(`machine ${machine.number}`, `${machine.name} ${key}`)
    }
    return hash.text('networks', JSON.stringify(this.topology.networks)).digest()
  }

  private makePool(first: Vm): WarmPool<GroupInstance> | undefined {
    const specs = this.topology.machines.map((machine) => resolveSpec({ ...this.specOf(machine), name: machine.name }))
    const guestCpus = specs.reduce((sum, spec) => sum + spec.cpus, 0)
    const size = this.configuredPool ?? defaultPoolSize({ cores: availableParallelism(), accel: first.handle.accel, guestCpus })
    if (this.rollback !== 'snapshot' || size === 0) return undefined
    return new WarmPool<GroupInstance>({
      size,
      memoryMiB: specs.reduce((sum, spec) => sum + spec.memory, 0) + (specs.length - 1) * perVmOverheadMiB,
      start: () => this.cleanClone(),
      recycle: this.reloadsInPlace ? (instance) => this.reload(instance) : undefined,
    })
  }

  private async nextClean(used: GroupInstance | undefined, options: StartOptions): Promise<GroupInstance> {
    if (this.rollback === 'none') {
      if (used && (await isWhole(used))) return used
    } else if (this.rollback === 'reboot') {
      if (used) this.retire(used)
      return this.bootAndSetUp(options)
    } else if (this.pool) {
      if (used) this.handBack(used)
      const taken = await this.pool.take().catch(() => undefined)
      if (taken && (await isWhole(taken))) return taken
      if (taken) this.retire(taken)
      return this.cleanClone(options)
    } else if (used && this.reloadsInPlace) {
      return this.reload(used, options)
    }
    if (used) this.retire(used)
    return this.cleanClone(options)
  }

  private get reloadsInPlace(): boolean {
    return this.rollback === 'snapshot' && this.snapshotKind === 'internal'
  }

  /**
   * The whole group back to its clean state in place: switches healed, every member loaded while
   * all are paused (which brings their links up). A group that cannot be (a VM or a switch died) is replaced.
   */
  private async reload(instance: GroupInstance, options: StartOptions = this.options): Promise<GroupInstance> {
    if (await isWhole(instance)) {
      try {
        // Partitions live in the switches, not in the VMs' state; a restore brings blocked links back up.
        await Promise.all([...instance.networks.values()].map((network) => network.heal()))
        await restoreTogether(instance.members, cleanTag, options.signal)
        return instance
      } catch {
        // Replaced below.
      }
    }
    this.retire(instance)
    return this.cleanClone(options)
  }

  private async cleanClone(options: StartOptions = this.options): Promise<GroupInstance> {
    const instance = await this.clone(options)
    if (!this.reloadsInPlace) return instance
    try {
      await snapshotTogether(instance.members, cleanTag)
      return instance
    } catch (error) {
      this.retire(instance)
      throw error
    }
  }

  /** A new copy of the group from the golden snapshot, on new switches. */
  private clone(options: StartOptions = this.options): Promise<GroupInstance> {
    const golden = this.goldenDir
    if (!golden) throw new Error(`vmharness: group ${this.names.join(', ')} cloned before its golden snapshot existed`)
    return GroupInstance.start(this.topology, (machine) => ({ ...this.specOf(machine), restoreFrom: join(golden, memberDir(machine)) }), options, this.topology.machines.length)
  }

  private async bootAndSetUp(options: StartOptions): Promise<GroupInstance> {
    // Under TCG boots share the CPUs: one at a time on a small host keeps each within its timeout.
    const instance = await GroupInstance.start(this.topology, (machine) => this.specOf(machine), options, Math.max(1, Math.floor(availableParallelism() / 2)))
    try {
      const members = this.topology.machines.map((machine) => ({ machine, vm: instance.vms.get(machine.name) as Vm }))
      // Together, not one by one: a setup may wait for a service another member's setup starts.
      await Promise.all(members.map(({ machine, vm }) => machine.config.setup?.(vm)))
      return instance
    } catch (error) {
      await instance.destroy()
      throw error
    }
  }

  private handBack(instance: GroupInstance): void {
    if (!this.pool?.takeBack(instance)) this.retire(instance)
  }

  private retire(instance: GroupInstance): void {
    const done = instance.destroy().catch(() => undefined)
    this.retiring.add(done)
    void done.then(() => this.retiring.delete(done))
  }

  private specOf(machine: TopologyMachine): VmSpec {
    const { setup: _setup, setupKey: _key, rollback: _rollback, pool: _pool, snapshotKind: _kind, ...spec } = machine.config
    return spec
  }
}

function memberDir(machine: TopologyMachine): string {
  return `machine-${machine.number}`
}

async function isWhole(instance: GroupInstance): Promise<boolean> {
  if (instance.destroyed) return false
  try {
    instance.assertNetworksAlive()
  } catch {
    return false
  }
  const states = await Promise.all(instance.members.map((vm) => vm.state().catch(() => undefined)))
  return states.every((state) => state?.status === 'running' || state?.status === 'paused')
}

/** How a group rolls back, from its members' configs: they must agree (a SpecError says where they do not). */
export function groupRollback(topology: GroupTopology): { rollback: RollbackMode; snapshotKind: SnapshotKind; pool: number | undefined } {
  const rollback = oneOf(agreed(topology, 'rollback', 'snapshot'), 'rollback', ['snapshot', 'reboot', 'none'])
  const snapshotKind = oneOf(agreed(topology, 'snapshotKind', defaultSnapshotKind), 'snapshotKind', ['internal', 'external'])
  const pool = agreed(topology, 'pool', undefined)
  if (pool !== undefined && (!Number.isInteger(pool) || pool < 0 || pool > 16)) throw new SpecError(`must be a whole number from 0 to 16, got ${String(pool)}`, 'pool')
  return { rollback, snapshotKind, pool }
}

function oneOf<T extends string>(value: T, field: string, choices: readonly T[]): T {
  if (!choices.includes(value)) throw new SpecError(`must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got '${String(value)}'`, field)
  return value
}

/** Machines of one group roll back together, so they must agree on how (the first that says wins; a different word is an error). */
function agreed<K extends 'rollback' | 'snapshotKind' | 'pool', D extends MachineConfig[K]>(topology: GroupTopology, field: K, fallback: D): NonNullable<MachineConfig[K]> | D {
  const given = topology.machines.filter((machine) => machine.config[field] !== undefined)
  const first = given[0]
  if (!first) return fallback
  const other = given.find((machine) => machine.config[field] !== first.config[field])
  if (other) {
    throw new SpecError(
      `'${first.name}' says ${String(first.config[field])} and '${other.name}' says ${String(other.config[field])}, but machines on one network are rolled back together: give them the same ${field} (or leave it out on all but one)`,
      `machines.${other.name}.${field}`,
    )
  }
  return first.config[field] as NonNullable<MachineConfig[K]>
}
