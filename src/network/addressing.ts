import { SpecError } from '../errors.js'

/** Networks and machines are numbered 1..254: the third and fourth octets of an IPv4 address. */
export const maxNetworks = 254
export const maxMachinesPerNetwork = 254

/** Where machine `node` sits on network `index`: the NixOS test driver's convention, so users know it. */
export interface NodeAddress {
  /** 52:54:00:12:<index>:<node>, in hex. */
  mac: string
  /** 192.168.<index>.<node> (the prefix is /24). */
  ipv4: string
  /** 2001:db8:<index>::<node> (the prefix is /64); the numbers are written as they are, in decimal digits. */
  ipv6: string
}

export const ipv4PrefixLength = 24
export const ipv6PrefixLength = 64

export function nodeAddress(index: number, node: number): NodeAddress {
  checkNumber(index, maxNetworks, 'network index')
  checkNumber(node, maxMachinesPerNetwork, 'machine number')
  const hex = (value: number) => value.toString(16).padStart(2, '0')
  return { mac: `52:54:00:12:${hex(index)}:${hex(node)}`, ipv4: `192.168.${index}.${node}`, ipv6: `2001:db8:${index}::${node}` }
}

function checkNumber(value: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < 1 || value > max) throw new SpecError(`must be a whole number from 1 to ${max}, got ${String(value)}`, what)
}
