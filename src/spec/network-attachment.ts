import { SpecError } from '../errors.js'
import { maxNetworks, nodeAddress, type NodeAddress } from '../network/addressing.js'

/** One machine's place on a network: its number there and the addresses that follow from it. */
export interface NetworkMember extends NodeAddress {
  name: string
  node: number
}

/** What a VM needs of a network to join it; the `Network` class is one. */
export interface JoinableNetwork {
  readonly name: string
  /** k: the third octet of its IPv4 addresses. */
  readonly index: number
  /** The switch's data socket directory. */
  readonly switchSocket: string
  /** Reserves a machine number (the given one, or the lowest free) for `machine`. */
  join(machine: string, node?: number): NetworkMember
  leave(machine: string): void
  members(): NetworkMember[]
}

/**
 * A VM's NIC on one network, in full: what the backend wires up and the guest configures. The
 * whole topology is in it (`hosts`), so that a saved state's recipe says which machines it knew.
 */
export interface NetworkAttachment extends NodeAddress {
  network: string
  index: number
  node: number
  /** Where the switch listens; left out of golden keys (it changes from run to run). */
  switchSocket: string
  /** Every machine on this network, this one included: the guest's /etc/hosts names them. */
  hosts: { name: string; ipv4: string; ipv6: string }[]
}

export type NetworkChoice = JoinableNetwork | { network: JoinableNetwork; node?: number }

export function isJoinable(value: unknown): value is JoinableNetwork {
  return typeof value === 'object' && value !== null && typeof (value as JoinableNetwork).join === 'function' && typeof (value as JoinableNetwork).switchSocket === 'string'
}

/** Joins each network the spec names, in order; on a failure, the ones joined so far are left again. */
export function joinNetworks(machine: string, choices: NetworkChoice[]): NetworkAttachment[] {
  const joined: { network: JoinableNetwork; attachment: NetworkAttachment }[] = []
  try {
    for (const choice of choices) {
      const network = isJoinable(choice) ? choice : choice.network
      const member = network.join(machine, isJoinable(choice) ? undefined : choice.node)
      joined.push({ network, attachment: attachmentOf(network, member) })
    }
    return joined.map(({ attachment }) => attachment)
  } catch (error) {
    for (const { network } of joined) network.leave(machine)
    throw error
  }
}

export function attachmentOf(network: JoinableNetwork, member: NetworkMember): NetworkAttachment {
  const hosts = network.members().map(({ name, ipv4, ipv6 }) => ({ name, ipv4, ipv6 }))
  return { network: network.name, index: network.index, node: member.node, mac: member.mac, ipv4: member.ipv4, ipv6: member.ipv6, switchSocket: network.switchSocket, hosts }
}

/** Checks attachments given as data (the fixtures' groups, clones): well formed, one per network, addresses that follow from the numbers. */
export function checkAttachments(value: unknown): NetworkAttachment[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new SpecError('must be an array of networks', 'networks')
  if (value.some(isJoinable) || value.some((entry) => isJoinable((entry as { network?: unknown } | null)?.network))) {
    throw new SpecError("Network objects are joined by Vm.start only; for machines rolled back between tests, name their networks in vmTest's 'networks' (or use a CleanGroup)", 'networks')
  }
  if (value.length > maxNetworks) throw new SpecError(`at most ${maxNetworks} networks per machine, got ${value.length}`, 'networks')
  const seen = new Set<number>()
  const names = new Set<string>()
  return value.map((entry: NetworkAttachment, position) => {
    const field = `networks[${position}]`
    if (typeof entry !== 'object' || entry === null || typeof entry.switchSocket !== 'string' || typeof entry.network !== 'string' || !Array.isArray(entry.hosts)) {
      throw new SpecError('must be a Network (or { network, node })', field)
    }
    const expected = nodeAddress(entry.index, entry.node)
    if (entry.mac !== expected.mac || entry.ipv4 !== expected.ipv4 || entry.ipv6 !== expected.ipv6) {
      throw new SpecError(`addresses do not follow from network ${entry.index}, machine ${entry.node}`, field)
    }
    if (seen.has(entry.index)) throw new SpecError(`joins network number ${entry.index} twice (give each Network an index of its own)`, field)
    if (names.has(entry.network)) throw new SpecError(`joins two networks named '${entry.network}': name them apart, since guestIp, block and unblock find a network by name`, field)
    seen.add(entry.index)
    names.add(entry.network)
    return entry
  })
}
