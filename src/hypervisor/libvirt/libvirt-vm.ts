import type { ExitInfo, SshEndpoint, StopMethod } from '../hypervisor.js'
import type { DomainDefinition, NetworkDefinition } from './domain-xml.js'
import type { LibvirtConnection } from './libvirt-connection.js'
import type { Pool } from './storage-pool.js'

export interface LibvirtSnapshot {
  name: string
  kind: 'internal' | 'external'
  createdAt: Date
  /** External: the local directory with snapshot.json (what `restoreFrom` takes). */
  dir?: string
  /** External: the state file and the frozen disk, volumes of the pool. */
  stateVolume?: string
  diskVolume?: string
}

/** All the libvirt backend knows of one VM. */
export interface LibvirtVm {
  id: string
  connection: LibvirtConnection
  pool: Pool
  /** The VM's local directory in the run dir (XML files, the seed before upload). */
  dir: string
  definition: DomainDefinition
  network: NetworkDefinition
  /** Volumes made for this VM alone, removed with it. */
  ownVolumes: Set<string>
  /** The volume its disk currently is. */
  diskVolume: string
  ssh: SshEndpoint
  /** The state file the first start restores instead of booting (a clone). */
  incomingState?: string
  started: boolean
  /** Set while the harness itself stops the domain (a save, a revert, a restore): its Stopped event is not an exit. */
  transition: number
  stopping?: StopMethod
  /** How the domain last stopped by itself, as libvirt said it (Stopped Shutdown: the guest powered off). */
  lastStop?: string
  /** A clone started paused still holds its original's address: it asks for its own lease once resumed. */
  leasePending?: boolean
  settleExit: (info: ExitInfo) => void
  exitSettled: boolean
  snapshots: Map<string, LibvirtSnapshot>
  lastFileNumber: number
}

/** The IPv4 address the VM's NIC leased on its network, or undefined while it has none. */
export async function leasedAddress(record: LibvirtVm): Promise<string | undefined> {
  const output = await record.connection.run(['domifaddr', record.definition.name, '--source', 'lease'])
  for (const line of output.split('\n')) {
    const [, mac, family, address] = line.trim().split(/\s+/)
    if (mac?.toLowerCase() === record.definition.mac && family === 'ipv4' && address) return address.split('/')[0]
  }
  return undefined
}
