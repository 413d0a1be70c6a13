import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'
import { networkInterfaces } from 'node:os'

/**
 * Where a guest with outside access may connect: any address but this host's own. Loopback,
 * unspecified and link-local addresses lead back to it, and so do the addresses of its
 * interfaces (a connection to them goes through `lo`, past filters on the outside interfaces).
 * Resolved once, here, so that a name cannot point elsewhere by the time the connection is made;
 * compared as addresses, so that no spelling (`::ffff:7f00:1`, `0:0:0:0:0:0:0:1`) slips through.
 */
export async function allowedDestination(host: string): Promise<{ address: string } | { refused: string }> {
  const bare = host.replace(/^\[|\]$/g, '')
  const addresses = isIP(bare) ? [bare] : (await lookup(bare, { all: true }).catch(() => [])).map((entry) => entry.address)
  if (addresses.length === 0) return { refused: `cannot resolve ${host}` }
  const forbidden = addresses.find(isThisHost)
  if (forbidden) return { refused: `${host} is ${forbidden}, an address of this host: outside access never reaches the host itself` }
  return { address: addresses[0] as string }
}

export function isThisHost(address: string): boolean {
  const family = isIP(address)
  if (family === 0) return true
  return hostAddresses().check(address, family === 6 ? 'ipv6' : 'ipv4')
}

function hostAddresses(): BlockList {
  const list = new BlockList()
  list.addSubnet('127.0.0.0', 8, 'ipv4')
  list.addSubnet('0.0.0.0', 8, 'ipv4')
  list.addSubnet('169.254.0.0', 16, 'ipv4')
  list.addAddress('::1', 'ipv6')
  list.addAddress('::', 'ipv6')
  list.addSubnet('fe80::', 10, 'ipv6')
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) list.addAddress(entry.address.split('%')[0] as string, entry.family === 'IPv6' ? 'ipv6' : 'ipv4')
  }
  return list
}
