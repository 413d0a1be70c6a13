import { randomInt } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HostError } from '../../errors.js'
import { networkXml, type NetworkDefinition } from './domain-xml.js'
import type { LibvirtConnection } from './libvirt-connection.js'
import { LibvirtError } from './libvirt-error.js'

/**
 * Each VM gets an isolated libvirt network of its own, a /28 out of 10.213.0.0/16: a clone of a
 * saved guest keeps the MAC and address it was saved with (they are part of the guest's state),
 * so two clones on one network would clash. On its own network a clone asks for a new lease once
 * the harness drops and restores its carrier, and the host routes each /28 to one bridge.
 */
const base = [10, 213]
const blocks = 4096
const prefixLength = 28

export async function createManagementNetwork(connection: LibvirtConnection, name: string, bridge: string, mac: string, scratchDir: string): Promise<NetworkDefinition> {
  let lastError: unknown
  for (let attempt = 0; attempt < 12; attempt++) {
    const block = randomInt(blocks)
    const third = Math.floor(block / 16)
    const fourth = (block % 16) * 16
    const address = (n: number) => `${base[0]}.${base[1]}.${third}.${fourth + n}`
    // The guest's MAC has an address of its own in DHCP: dnsmasq offers it at once, where it would
    // first ping a dynamic address for ~3 s (measured: lease 3.1 s after the guest asked).
    const network: NetworkDefinition = { name, bridge, gateway: address(1), prefixLength, rangeStart: address(2), rangeEnd: address(14), guest: { mac, address: address(2) } }
    const file = join(scratchDir, `network-${name}.xml`)
    await writeFile(file, networkXml(network), { mode: 0o600 })
    try {
      await connection.run(['net-create', file])
      return network
    } catch (error) {
      lastError = error
      // Another network (ours or the host's) already routes this block: try another.
      if (!(error instanceof LibvirtError) || /already exists/i.test(error.message) || !/in use|overlap|already/i.test(error.message)) throw error
    }
  }
  throw new HostError(`no free /28 for a VM's network in 10.213.0.0/16 on ${connection.uri} after 12 tries: ${(lastError as Error).message}`, 'remove unused libvirt networks on that host (virsh net-list)')
}

export async function destroyManagementNetwork(connection: LibvirtConnection, name: string): Promise<void> {
  await connection.tryRun(['net-destroy', name])
}
