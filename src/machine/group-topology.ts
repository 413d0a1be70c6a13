import { SpecError } from '../errors.js'
import { maxMachinesPerNetwork, maxNetworks, nodeAddress } from '../network/addressing.js'
import type { NetworkAttachment } from '../spec/network-attachment.js'
import type { MachineConfig } from './clean-machine.js'
import { hostnameFor } from '../images/nocloud-seed.js'
import { checkNetworkName } from '../network/network.js'

/** A machine of a file, numbered in declaration order from 1: its last address octet on every network. */
export interface TopologyMachine {
  name: string
  number: number
  config: MachineConfig
}

/** A network of a file, numbered in declaration order from 1: the third octet of its addresses. */
export interface TopologyNetwork {
  name: string
  index: number
  /** Machine names, in their declaration order. */
  members: string[]
}

/** Machines that share networks (directly or through each other): saved, restored and pooled as one unit. */
export interface GroupTopology {
  machines: TopologyMachine[]
  networks: TopologyNetwork[]
}

export const defaultNetworkName = 'lan'

/**
 * Splits a file's machines into groups (connected through networks) and machines on no network.
 * Without `networks`, a file of several machines puts them all on one network named 'lan' (the
 * NixOS test driver's default); `networks: {}` leaves every machine on its own.
 */
export function topologyOf(machines: Record<string, MachineConfig>, networks: Record<string, string[]> | undefined): { groups: GroupTopology[]; solo: string[] } {
  const names = Object.keys(machines)
  if (names.length > maxMachinesPerNetwork) throw new SpecError(`at most ${maxMachinesPerNetwork} machines per file (each has a number on its networks), got ${names.length}`, 'machines')
  for (const name of names) {
    if (machines[name]?.networks !== undefined) throw new SpecError(`give networks in vmTest's 'networks' ({ name: ['${name}', ...] }), not in the machine`, `machines.${name}.networks`)
  }
  const declared = networks ?? (names.length > 1 ? { [defaultNetworkName]: names } : {})
  const networkList = checkNetworks(declared, names)
  checkHostnames(networkList)
  const numbered: TopologyMachine[] = names.map((name, position) => ({ name, number: position + 1, config: machines[name] as MachineConfig }))
  const groupOf = connectedGroups(names, networkList)
  const groups = [...new Set(groupOf.values())].map((members) => ({
    machines: numbered.filter((machine) => members.has(machine.name)),
    networks: networkList.filter((network) => network.members.some((member) => members.has(member))),
  }))
  return { groups, solo: names.filter((name) => !groupOf.has(name)) }
}

function checkNetworks(declared: unknown, machineNames: string[]): TopologyNetwork[] {
  if (typeof declared !== 'object' || declared === null || Array.isArray(declared)) {
    throw new SpecError("must map network names to machine names, e.g. { lan: ['server', 'client'] }", 'networks')
  }
  const entries = Object.entries(declared as Record<string, unknown>)
  if (entries.length > maxNetworks) throw new SpecError(`at most ${maxNetworks} networks, got ${entries.length}`, 'networks')
  return entries.map(([name, members], position) => {
    const field = `networks.${name}`
    checkNetworkName(name)
    if (!Array.isArray(members) || members.length === 0 || members.some((member) => typeof member !== 'string')) {
      throw new SpecError('must list the names of the machines on it (at least one)', field)
    }
    const unknown = members.filter((member) => !machineNames.includes(member))
    if (unknown.length > 0) throw new SpecError(`names no such machine: ${unknown.map((m) => `'${m}'`).join(', ')} (the machines are ${machineNames.map((m) => `'${m}'`).join(', ')})`, field)
    if (new Set(members).size !== members.length) throw new SpecError('lists a machine twice', field)
    const ordered = machineNames.filter((machine) => members.includes(machine))
    return { name, index: position + 1, members: ordered }
  })
}

/** Two machines of one network must not get one host name (`web_1` and `web-1` are both `web-1`). */
function checkHostnames(networks: TopologyNetwork[]): void {
  for (const network of networks) {
    const byHostname = new Map<string, string>()
    for (const member of network.members) {
      const hostname = hostnameFor(member)
      const other = byHostname.get(hostname)
      if (other) throw new SpecError(`'${other}' and '${member}' would both be '${hostname}' in /etc/hosts (host names allow letters, digits and '-'): rename one`, `networks.${network.name}`)
      byHostname.set(hostname, member)
    }
  }
}

/** Each networked machine's group: the set of machines it reaches through shared networks. */
function connectedGroups(names: string[], networks: TopologyNetwork[]): Map<string, Set<string>> {
  const groupOf = new Map<string, Set<string>>()
  for (const network of networks) {
    const merged = new Set<string>(network.members)
    for (const member of network.members) for (const other of groupOf.get(member) ?? []) merged.add(other)
    for (const member of merged) groupOf.set(member, merged)
  }
  return new Map(names.filter((name) => groupOf.has(name)).map((name) => [name, groupOf.get(name) as Set<string>]))
}

/** A member's NICs: one per network of the group it is on, with the whole network's names for /etc/hosts. */
export function memberAttachments(topology: GroupTopology, machine: TopologyMachine, switchSockets: Map<string, string>): NetworkAttachment[] {
  const numberOf = new Map(topology.machines.map((m) => [m.name, m.number]))
  return topology.networks
    .filter((network) => network.members.includes(machine.name))
    .map((network) => ({
      network: network.name,
      index: network.index,
      node: machine.number,
      ...nodeAddress(network.index, machine.number),
      switchSocket: switchSockets.get(network.name) ?? '',
      hosts: network.members.map((member) => {
        const { ipv4, ipv6 } = nodeAddress(network.index, numberOf.get(member) as number)
        return { name: member, ipv4, ipv6 }
      }),
    }))
}

/** The topology as a person reads it in a failure report. */
export function describeTopology(topology: GroupTopology): string {
  const lines = ['topology:']
  for (const network of topology.networks) {
    lines.push(`  network '${network.name}' (192.168.${network.index}.0/24, 2001:db8:${network.index}::/64):`)
    for (const member of network.members) {
      const number = topology.machines.find((machine) => machine.name === member)?.number as number
      const { ipv4, ipv6, mac } = nodeAddress(network.index, number)
      lines.push(`    ${member}: ${ipv4}, ${ipv6} (mac ${mac})`)
    }
  }
  return lines.join('\n')
}
