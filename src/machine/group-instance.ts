import { Network } from '../network/network.js'
import type { StartOptions } from './vm.js'
import { Vm } from './vm.js'
import { memberAttachments, type GroupTopology, type TopologyMachine } from './group-topology.js'
import type { VmSpec } from '../spec/vm-spec.js'

/** One running copy of a group: a switch per network (its own: never shared with another copy) and a VM per machine. */
export class GroupInstance implements AsyncDisposable {
  private ended = false

  private constructor(
    readonly topology: GroupTopology,
    readonly networks: Map<string, Network>,
    readonly vms: Map<string, Vm>,
  ) {}

  /**
   * Creates the group's switches, then starts every machine on them with `specOf` (boots or
   * clones), `parallel` at a time. On any failure nothing is left running.
   */
  static async start(topology: GroupTopology, specOf: (machine: TopologyMachine) => VmSpec, options: StartOptions, parallel: number): Promise<GroupInstance> {
    // Clones of one saved instant are loaded paused and resumed together, so that no member runs
    // (and sends to a peer that is not there yet) before the others.
    const clones = topology.machines.every((machine) => specOf(machine).restoreFrom !== undefined)
    const networks = new Map<string, Network>()
    const vms = new Map<string, Vm>()
    const instance = new GroupInstance(topology, networks, vms)
    try {
      for (const network of topology.networks) {
        const created = await Network.create({ name: network.name, index: network.index, signal: options.signal })
        networks.set(network.name, created)
        // The members by name and number: what partitions name, and the switch port each one has.
        for (const member of network.members) created.join(member, topology.machines.find((machine) => machine.name === member)?.number)
      }
      const sockets = new Map([...networks].map(([name, network]) => [name, network.switchSocket]))
      const queue = [...topology.machines]
      const started = new Map<string, Vm>()
      const workers = Array.from({ length: Math.max(1, parallel) }, async () => {
        for (let machine = queue.shift(); machine; machine = queue.shift()) {
          const spec = { ...specOf(machine), name: machine.name, networks: memberAttachments(topology, machine, sockets) }
          try {
            started.set(machine.name, await Vm.start(spec, { ...options, leavePaused: clones }))
          } catch (error) {
            queue.length = 0
            throw error
          }
        }
      })
      const results = await Promise.allSettled(workers)
      // In declaration order, whatever order they came up in.
      for (const machine of topology.machines) {
        const vm = started.get(machine.name)
        if (vm) vms.set(machine.name, vm)
      }
      const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected')
      if (failed) throw failed.reason
      if (clones) {
        await Promise.all(instance.members.map((vm) => vm.resume()))
        await Promise.all(instance.members.map((vm) => vm.reconnect(options.signal)))
      }
      return instance
    } catch (error) {
      await instance.destroy()
      throw error
    }
  }

  /** The members in declaration order. */
  get members(): Vm[] {
    return [...this.vms.values()]
  }

  /** A NetworkError naming the first network whose switch has died, if any. */
  assertNetworksAlive(): void {
    for (const network of this.networks.values()) network.assertAlive()
  }

  /** Whether destroy has run: its VMs and switches are gone. */
  get destroyed(): boolean {
    return this.ended
  }

  /** Destroys every VM, then every switch, even when one of them fails; then throws the first failure. */
  async destroy(): Promise<void> {
    this.ended = true
    const vms = await Promise.allSettled([...this.vms.values()].map((vm) => vm.destroy()))
    this.vms.clear()
    const networks = await Promise.allSettled([...this.networks.values()].map((network) => network.destroy()))
    this.networks.clear()
    const failed = [...vms, ...networks].find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected')
    if (failed) throw failed.reason
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }
}
