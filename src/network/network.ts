import { randomBytes } from 'node:crypto'
import { realpath, rm } from 'node:fs/promises'
import { NetworkError, SpecError } from '../errors.js'
import { locateRequired } from '../host/requirements.js'
import { runDir } from '../host/run-dir.js'
import type { NetworkMember } from '../spec/network-attachment.js'
import { maxMachinesPerNetwork, maxNetworks, nodeAddress } from './addressing.js'
import { checkVdeSocketPaths } from './vde-socket-path.js'
import { dataSocketDir, describeSwitchExit, startVdeSwitch, type SwitchExit, type VdeSwitch } from './vde-switch.js'

export interface NetworkOptions {
  /** Default 'lan'. */
  name?: string
  /** k in 192.168.k.n, 1..254. Default: the lowest not used by another open Network of this process. */
  index?: number
  signal?: AbortSignal
}

/** A machine on a network: its number n there (which is also its switch port) and its addresses. */
export type Member = NetworkMember

/** The VLAN that machines named in no group of a partition stay in: the one every port starts in. */
const restVlan = 0

/**
 * How many open networks of this process have each index. An index left out is one no open
 * network has (a machine on two networks of one index would have one address twice); an index
 * given may repeat, for copies of one topology on switches of their own (the warm pool's groups).
 */
const openIndexes = new Map<number, number>()

/**
 * An Ethernet segment between machines: a rootless `vde_switch` of its own, with the machines'
 * numbers and addresses on it, and partitions made of VLANs at the switch.
 */
export class Network implements AsyncDisposable {
  /** The switch's data socket directory: what QEMU's `-netdev vde,sock=` takes. */
  readonly switchSocket: string
  /** Ends when the switch process does: asked for by destroy, or not (`requested` says which). */
  readonly exited: Promise<SwitchExit>
  private readonly membersByName = new Map<string, Member>()
  /** The VLAN of each switch port that this network moved out of the rest VLAN. */
  private readonly portVlans = new Map<number, number>()
  private readonly createdVlans = new Set<number>()
  private changes: Promise<unknown> = Promise.resolve()
  private destroying: Promise<void> | undefined

  private constructor(
    readonly name: string,
    readonly index: number,
    private readonly dir: string,
    private readonly vde: VdeSwitch,
  ) {
    this.switchSocket = vde.dataSocket
    this.exited = vde.exited
  }

  static async create(options: NetworkOptions = {}): Promise<Network> {
    const name = options.name ?? 'lan'
    checkNetworkName(name)
    const index = reserveIndex(name, options.index)
    try {
      options.signal?.throwIfAborted()
      const tools = { setpriv: await locateRequired('setpriv'), vdeSwitch: await locateRequired('vde-switch') }
      const run = await runDir()
      const dir = await run.netDir(randomBytes(4).toString('hex'))
      try {
        // vde and QEMU resolve the directory before they bind in it, so its real path has to fit too;
        // the switch is given the run's own path, which the sweep looks for on its command line.
        for (const path of new Set([dir, await realpath(dir)])) checkVdeSocketPaths(dataSocketDir(path), run.path)
        const vde = await startVdeSwitch(tools, dir, { network: name, signal: options.signal })
        return new Network(name, index, dir, vde)
      } catch (error) {
        await rm(dir, { recursive: true, force: true })
        throw error
      }
    } catch (error) {
      releaseIndex(index)
      throw error
    }
  }

  /**
   * Reserves machine number `node` (given, or the lowest free one) for a machine, and returns its
   * addresses. QEMU plugs it in with `-netdev vde,sock=<switchSocket>,port=<node>`.
   */
  join(machine: string, node?: number): Member {
    this.assertAlive()
    if (!machine) throw new SpecError('must not be empty', 'machine name')
    if (this.membersByName.has(machine)) throw new NetworkError(`machine '${machine}' has already joined, as number ${this.membersByName.get(machine)?.node}`, this.name)
    const taken = new Set([...this.membersByName.values()].map((member) => member.node))
    const chosen = node ?? lowestFree(taken, maxMachinesPerNetwork)
    if (chosen === undefined) throw new NetworkError(`all ${maxMachinesPerNetwork} machine numbers are taken; '${machine}' cannot join`, this.name)
    const address = nodeAddress(this.index, chosen)
    const holder = [...this.membersByName.values()].find((member) => member.node === chosen)
    if (holder) throw new NetworkError(`machine number ${chosen} is taken by '${holder.name}'; '${machine}' cannot have it`, this.name)
    const member: Member = { name: machine, node: chosen, ...address }
    this.membersByName.set(machine, member)
    return member
  }

  /** Frees a machine's number. Its port goes back to the rest of the network, for whoever joins with that number next. */
  leave(machine: string): void {
    const member = this.membersByName.get(machine)
    if (!member) return
    this.membersByName.delete(machine)
    if (this.portVlans.has(member.node) && !this.vde.exitInfo) {
      // A failure here shows in assertAlive, and the next partition or heal sets the port again.
      this.change(() => this.setVlans(new Map([[member.node, restVlan]]))).catch(() => undefined)
    }
  }

  /** The machines on the network, by number. */
  members(): Member[] {
    return [...this.membersByName.values()].sort((a, b) => a.node - b.node)
  }

  /**
   * Cuts the network into groups: traffic between machines of different groups is dropped
   * silently at the switch (each group is a VLAN; the guests keep their carrier). Machines named in
   * no group form one more group, which machines that join later are in too. A partition replaces
   * the one before it.
   */
  async partition(...groups: string[][]): Promise<void> {
    this.assertAlive()
    const vlans = new Map<number, number>()
    const groupOf = new Map<string, number>()
    groups.forEach((group, position) => {
      for (const machine of group) {
        const member = this.membersByName.get(machine)
        if (!member) throw new NetworkError(`cannot partition: no machine '${machine}' has joined (members: ${this.memberList()})`, this.name)
        const earlier = groupOf.get(machine)
        if (earlier !== undefined && earlier !== position) throw new NetworkError(`cannot partition: machine '${machine}' is named in groups ${earlier + 1} and ${position + 1}`, this.name)
        groupOf.set(machine, position)
        vlans.set(member.node, position + 1)
      }
    })
    await this.change(() => this.setVlans(new Map([...this.portsBackToRest(), ...vlans])))
  }

  /** Joins every machine into one network again. */
  async heal(): Promise<void> {
    this.assertAlive()
    await this.change(() => this.setVlans(this.portsBackToRest()))
  }

  /** Throws a NetworkError when the switch has died or the network was destroyed. */
  assertAlive(): void {
    if (this.destroying) throw new NetworkError('has been destroyed', this.name)
    const exit = this.vde.exitInfo
    if (exit) throw new NetworkError(`its vde_switch has died (${describeSwitchExit(exit)}): the machines on it are cut off from each other; create a new network and start them on it`, this.name)
  }

  /** Stops the switch and removes its directory. Safe to call twice. */
  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      try {
        this.vde.mgmt.close()
        await this.vde.stop()
        await rm(this.dir, { recursive: true, force: true })
      } finally {
        releaseIndex(this.index)
      }
    })()
    return this.destroying
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }

  /** Runs changes to the switch one after another, so that each sees the ports the one before left. */
  private change(work: () => Promise<void>): Promise<void> {
    const result = this.changes.then(work)
    this.changes = result.catch(() => undefined)
    return result
  }

  /** Every port this network moved out of the rest VLAN, back in it. */
  private portsBackToRest(): Map<number, number> {
    return new Map([...this.portVlans.keys()].map((port) => [port, restVlan]))
  }

  /** Puts each port in `wanted` in its VLAN, sending only what changes. */
  private async setVlans(wanted: Map<number, number>): Promise<void> {
    this.assertAlive()
    for (const vlan of new Set(wanted.values())) {
      if (vlan === restVlan || this.createdVlans.has(vlan)) continue
      await this.vde.mgmt.createVlan(vlan)
      this.createdVlans.add(vlan)
    }
    for (const [port, vlan] of wanted) {
      if ((this.portVlans.get(port) ?? restVlan) === vlan) continue
      await this.vde.mgmt.setPortVlan(port, vlan)
      if (vlan === restVlan) this.portVlans.delete(port)
      else this.portVlans.set(port, vlan)
    }
  }

  private memberList(): string {
    return this.members().map((member) => member.name).join(', ') || 'none'
  }
}

export function checkNetworkName(name: string): void {
  // It names the network in messages and, on the machine side, QEMU devices: QEMU's id syntax.
  if (!/^[A-Za-z][A-Za-z0-9._-]*$/.test(name)) throw new SpecError(`must start with a letter and hold only letters, digits, '.', '_' and '-', got ${JSON.stringify(name)}`, 'network name')
}

function reserveIndex(name: string, wanted: number | undefined): number {
  if (wanted !== undefined) nodeAddress(wanted, 1) // a SpecError unless 1..254, as for addresses
  const index = wanted ?? lowestFree(new Set(openIndexes.keys()), maxNetworks)
  if (index === undefined) throw new NetworkError(`all ${maxNetworks} network indexes are in use by open networks of this process`, name)
  openIndexes.set(index, (openIndexes.get(index) ?? 0) + 1)
  return index
}

function releaseIndex(index: number): void {
  const count = (openIndexes.get(index) ?? 1) - 1
  if (count > 0) openIndexes.set(index, count)
  else openIndexes.delete(index)
}

function lowestFree(taken: ReadonlySet<number>, max: number): number | undefined {
  for (let n = 1; n <= max; n++) if (!taken.has(n)) return n
  return undefined
}
