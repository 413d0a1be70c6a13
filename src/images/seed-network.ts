import { isIP } from 'node:net'
import { SpecError } from '../errors.js'

export interface SeedNetwork {
  mac: string
  /** CIDR, e.g. 192.168.1.2/24. */
  ipv4: string
  /** CIDR, e.g. 2001:db8:1::2/64. */
  ipv6: string
}

export interface SeedHost {
  address: string
  name: string
}

const macPattern = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i
const hostnamePattern = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i

/**
 * The meta-data lines that give a guest its static addresses and /etc/hosts entries: a YAML
 * list per key (cloud-init parses meta-data as YAML), one entry a line, words separated by
 * spaces, which the guests' boot scripts read with sed and `read`. Every value is checked here,
 * so that no value can split a line or smuggle in another key.
 */
export function networkSeedLines(networks: SeedNetwork[] = [], hosts: SeedHost[] = []): string[] {
  const seen = new Set<string>()
  const networkLines = networks.map((network, i) => {
    const field = `networks[${i}]`
    if (typeof network.mac !== 'string' || !macPattern.test(network.mac)) throw new SpecError(`'${String(network.mac)}' is not a MAC address (six hex pairs joined by ':')`, `${field}.mac`)
    const mac = network.mac.toLowerCase()
    if (seen.has(mac)) throw new SpecError(`${mac} is listed twice: each NIC is found by its MAC`, `${field}.mac`)
    seen.add(mac)
    return `- ${mac} ${checkCidr(network.ipv4, 4, `${field}.ipv4`)} ${checkCidr(network.ipv6, 6, `${field}.ipv6`)}`
  })
  const hostLines = hosts.map((host, i) => {
    if (typeof host.address !== 'string' || isIP(host.address) === 0) throw new SpecError(`'${String(host.address)}' is not an IPv4 or IPv6 address`, `hosts[${i}].address`)
    if (typeof host.name !== 'string' || !hostnamePattern.test(host.name)) throw new SpecError(`'${String(host.name)}' is not a host name (letters, digits, '-', labels joined by '.')`, `hosts[${i}].name`)
    return `- ${host.address} ${host.name}`
  })
  return [
    ...(networkLines.length > 0 ? ['vmharness-networks:', ...networkLines] : []),
    ...(hostLines.length > 0 ? ['vmharness-hosts:', ...hostLines] : []),
  ]
}

function checkCidr(value: unknown, family: 4 | 6, field: string): string {
  const [address, prefix, ...rest] = typeof value === 'string' ? value.split('/') : []
  const maxPrefix = family === 4 ? 32 : 128
  if (address === undefined || isIP(address) !== family || prefix === undefined || rest.length > 0 || !/^\d{1,3}$/.test(prefix) || Number(prefix) > maxPrefix) {
    throw new SpecError(`'${String(value)}' is not an IPv${family} address with a prefix length (e.g. ${family === 4 ? '192.168.1.2/24' : '2001:db8:1::2/64'})`, field)
  }
  return `${address}/${Number(prefix)}`
}
