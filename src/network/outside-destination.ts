import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'

/**
 * Where a guest with outside access may connect: any address but the host's own loopback (and
 * the unspecified and link-local ones, which lead back to this host too). Resolved once, here,
 * so that a name cannot point elsewhere by the time the connection is made.
 */
export async function allowedDestination(host: string): Promise<{ address: string } | { refused: string }> {
  const bare = host.replace(/^\[|\]$/g, '')
  const addresses = isIP(bare) ? [bare] : (await lookup(bare, { all: true }).catch(() => [])).map((entry) => entry.address)
  if (addresses.length === 0) return { refused: `cannot resolve ${host}` }
  const forbidden = addresses.find(isHostOnly)
  if (forbidden) return { refused: `${host} is ${forbidden}, an address of this host: outside access never reaches the host itself` }
  return { address: addresses[0] as string }
}

function isHostOnly(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address
  if (isIP(v4) === 4) return /^(127\.|0\.|169\.254\.)/.test(v4)
  const lower = address.toLowerCase()
  return lower === '::1' || lower === '::' || /^fe[89ab]/.test(lower)
}
