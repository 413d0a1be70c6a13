import { mkdir } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { ContentHash } from '../common/content-hash.js'
import { harnessVersion } from '../common/harness-version.js'
import { SpecError } from '../errors.js'
import type { KeptVm } from '../hypervisor/keep/kept-vms.js'
import { resolveSpec, type VmSpec } from '../spec/vm-spec.js'
import type { MachineConfig } from './clean-machine.js'
import { checkRollback, CleanCycle, type GoldenStart, type RollbackChoice } from './clean-cycle.js'
import { recipeGoldenKey, unitFromGolden } from './golden.js'
import { GroupInstance } from './group-instance.js'
import { memberAttachments, type GroupTopology, type TopologyMachine } from './group-topology.js'
import { restoreTogether, snapshotTogether } from './vm-group.js'
import type { StartOptions, Vm } from './vm.js'
import { perVmOverheadMiB } from './warm-pool.js'

const cleanTag = 'clean'

/**
 * The machines of one group (they share networks) as one unit: one golden snapshot taken of all
 * of them at one instant, and for every test the whole group back in that state, on switches of
 * its own. The group counterpart of CleanMachine, with the same rollback modes and warm pool.
 */
export class CleanGroup extends CleanCycle<GroupInstance> {
  /** Groups kept for debugging: their VMs are no longer ours, their switches are until close. */
  private readonly keptNetworks: GroupInstance[] = []

  constructor(
    readonly topology: GroupTopology,
    options: StartOptions = {},
  ) {
    super(groupRollback(topology), options)
  }

  get names(): string[] {
    return this.topology.machines.map((machine) => machine.name)
  }

  /**
   * Leaves the group's VMs running for debugging. Their switches stay up while this group is
   * open, and cannot outlive this process (QEMU does not reconnect to a new switch): a kept group
   * can talk among itself until the test run ends. A member that cannot be kept is destroyed.
   */
  async keep(instance: GroupInstance, reason: string): Promise<KeptVm[]> {
    this.giveUp(instance)
    const outcomes = await Promise.allSettled(instance.members.map((vm) => vm.keep(reason)))
    this.keptNetworks.push(instance)
    const failed = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected')
    if (failed) {
      await Promise.all(instance.members.map((vm) => vm.destroy()))
      throw failed.reason
    }
    return outcomes.map((outcome) => (outcome as PromiseFulfilledResult<KeptVm>).value)
  }

  override async close(): Promise<void> {
    await super.close()
    await Promise.all(this.keptNetworks.splice(0).map((instance) => instance.destroy()))
  }

  /** Every setup runs, then all members are saved at one instant, each into a directory of the entry. */
  protected async startFromGolden(options: StartOptions): Promise<GoldenStart<GroupInstance>> {
    const build = async (snapshotDir: string) => {
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
    }
    const description = { group: this.names, networks: this.topology.networks, version: harnessVersion() }
    const { unit, entry, built } = await unitFromGolden(await this.goldenKey(options), description, build, (dir) => this.cloneFrom(dir, options), options)
    return { unit, goldenDir: entry.snapshotDir, built }
  }

  /** A new copy of the group from the golden snapshot, on new switches. */
  protected cloneFrom(goldenDir: string, options: StartOptions): Promise<GroupInstance> {
    return GroupInstance.start(this.topology, (machine) => ({ ...this.specOf(machine), restoreFrom: join(goldenDir, memberDir(machine)) }), options, this.topology.machines.length)
  }

  protected async bootAndSetUp(options: StartOptions): Promise<GroupInstance> {
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

  protected async saveClean(instance: GroupInstance): Promise<void> {
    await snapshotTogether(instance.members, cleanTag)
  }

  /** Switches healed (partitions live in the switches, not in the VMs), then every member reloaded while all are paused (which brings their links up). */
  protected async restoreClean(instance: GroupInstance, options: StartOptions): Promise<void> {
    await Promise.all([...instance.networks.values()].map((network) => network.heal()))
    await restoreTogether(instance.members, cleanTag, options.signal)
  }

  protected async isUsable(instance: GroupInstance): Promise<boolean> {
    if (instance.destroyed) return false
    try {
      instance.assertNetworksAlive()
    } catch {
      return false
    }
    const states = await Promise.all(instance.members.map((vm) => vm.state().catch(() => undefined)))
    return states.every((state) => state?.status === 'running' || state?.status === 'paused')
  }

  /** All members together: their vCPUs for the default pool size, their memory (and QEMU's overhead for all but one) for the room check. */
  protected poolDemand(first: GroupInstance): { accel: Vm['handle']['accel']; guestCpus: number; memoryMiB: number } {
    const specs = this.topology.machines.map((machine) => resolveSpec({ ...this.specOf(machine), name: machine.name }))
    return {
      accel: (first.members[0] as Vm).handle.accel,
      guestCpus: specs.reduce((sum, spec) => sum + spec.cpus, 0),
      memoryMiB: specs.reduce((sum, spec) => sum + spec.memory, 0) + (specs.length - 1) * perVmOverheadMiB,
    }
  }

  protected startRecord(instance: GroupInstance): void {
    for (const vm of instance.members) vm.commands.length = 0
  }

  protected describe(): string {
    return `group ${this.names.join(', ')}`
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

  private specOf(machine: TopologyMachine): VmSpec {
    const { setup: _setup, setupKey: _key, rollback: _rollback, pool: _pool, snapshotKind: _kind, ...spec } = machine.config
    return spec
  }
}

function memberDir(machine: TopologyMachine): string {
  return `machine-${machine.number}`
}

/** How a group rolls back, from its members' configs: they must agree (a SpecError says where they do not). */
export function groupRollback(topology: GroupTopology): RollbackChoice {
  return checkRollback({ rollback: agreed(topology, 'rollback'), snapshotKind: agreed(topology, 'snapshotKind'), pool: agreed(topology, 'pool') }, '')
}

/** Machines of one group roll back together, so they must agree on how (the first that says wins; a different word is an error). */
function agreed<K extends 'rollback' | 'snapshotKind' | 'pool'>(topology: GroupTopology, field: K): MachineConfig[K] {
  const given = topology.machines.filter((machine) => machine.config[field] !== undefined)
  const first = given[0]
  if (!first) return undefined
  const other = given.find((machine) => machine.config[field] !== first.config[field])
  if (other) {
    throw new SpecError(
      `'${first.name}' says ${String(first.config[field])} and '${other.name}' says ${String(other.config[field])}, but machines on one network are rolled back together: give them the same ${field} (or leave it out on all but one)`,
      `machines.${other.name}.${field}`,
    )
  }
  return first.config[field]
}
