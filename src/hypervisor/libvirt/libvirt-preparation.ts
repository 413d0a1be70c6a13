import { randomBytes, randomUUID } from 'node:crypto'
import { connect } from 'node:net'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { SshError } from '../../errors.js'
import { runDir } from '../../host/run-dir.js'
import { hostnameFor, writeSeedIso } from '../../images/nocloud-seed.js'
import { resolveImage } from '../../images/resolve-image.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import { generateKeyPair, runClientKey } from '../../ssh/keys.js'
import type { ExitInfo, PrepareOptions, SshEndpoint, VmHandle } from '../hypervisor.js'
import type { DomainDefinition } from './domain-xml.js'
import type { LibvirtConnection } from './libvirt-connection.js'
import { leasedAddress, type LibvirtVm } from './libvirt-vm.js'
import { extrasFor } from './domain-extras.js'
import { createManagementNetwork } from './management-network.js'
import { runTag } from './run-tag.js'
import { fenceWanted } from './guest-fence.js'
import { createOverlay, fileFormat, uploadOnce, uploadVolume, volumePath, type Pool } from './storage-pool.js'

export interface PreparedLibvirtVm {
  record: LibvirtVm
  handle: VmHandle
}

export interface Placement {
  connection: LibvirtConnection
  pool: Pool
  accel: 'kvm' | 'tcg'
}

/** Names of one VM on its host: all start with the run's prefix, so the sweep finds them. */
export async function vmNames(): Promise<{ id: string; domain: string; bridge: string }> {
  const id = randomBytes(4).toString('hex')
  return { id, domain: `vmh-${await runTag()}-${id}`, bridge: `vmh${id}` }
}

/** A VM that boots its image: the image's files uploaded once, its own overlay, seed, network and console log. */
export async function prepareLibvirtBoot(spec: ResolvedSpec, options: PrepareOptions, placement: Placement): Promise<PreparedLibvirtVm> {
  const { connection, pool, accel } = placement
  const image = await resolveImage(spec, options)
  const { id, domain, bridge } = await vmNames()
  const dir = await (await runDir()).vmDir(id)
  const record = newRecord(id, dir, placement)
  const mac = randomMac()
  // Starting a network takes 0.3–0.4 s here (dnsmasq, firewall rules): it starts while the volumes are made.
  const network = createManagementNetwork(connection, domain, bridge, mac, dir)
  network.catch(() => undefined)
  try {
    const disk = await uploadOnce(connection, pool, image.disk, 'disk')
    const kernel = image.kernel ? await uploadOnce(connection, pool, image.kernel, 'kernel') : undefined
    const initrd = image.initrd ? await uploadOnce(connection, pool, image.initrd, 'initrd') : undefined
    const overlay = `${domain}-disk-0.qcow2`
    await createOverlay(connection, pool, overlay, disk, await fileFormat(image.disk))
    record.ownVolumes.add(overlay)
    record.diskVolume = overlay
    const clientKey = await runClientKey()
    const hostKey = generateKeyPair(`vmharness-host-${id}`)
    const seedFile = join(dir, 'seed.iso')
    await writeSeedIso(seedFile, { instanceId: `vmharness-${id}`, hostname: hostnameFor(spec.name), authorizedKeys: [clientKey.publicKey], hostKey, address: 'dhcp' })
    const seed = `${domain}-seed.iso`
    await uploadVolume(connection, pool, seed, seedFile)
    record.ownVolumes.add(seed)
    record.network = await network
    const consoleLog = `${domain}-console.log`
    record.ownVolumes.add(consoleLog)
    record.definition = {
      name: domain,
      uuid: randomUUID(),
      type: accel === 'kvm' ? 'kvm' : 'qemu',
      machine: spec.machine === 'pc' ? 'pc' : 'q35',
      memoryMiB: spec.memory,
      cpus: spec.cpus,
      kernel: kernel ? { path: volumePath(pool, kernel), initrd: initrd ? volumePath(pool, initrd) : undefined, cmdline: [...image.kernelArgs, ...(accel === 'tcg' ? ['tsc=reliable'] : []), ...spec.kernelArgs].join(' ') } : undefined,
      disk: volumePath(pool, overlay),
      ...extrasFor(connection.uri, kernel !== undefined),
      seed: volumePath(pool, seed),
      network: record.network.name,
      mac,
      consoleLog: volumePath(pool, consoleLog),
      run: await runTag(),
      fenced: fenceWanted(),
    }
    record.ssh = endpointFor(record, { user: image.sshUser, privateKey: clientKey.privateKey, hostKey: hostKey.publicKey })
    return { record, handle: handleFor(id, spec, record, { readyMarker: image.readyMarker, failureMarker: image.failureMarker, readyCommand: image.readyCommand }) }
  } catch (error) {
    record.network ??= (await network.catch(() => undefined)) as LibvirtVm['network']
    await discardPrepared(record)
    throw error
  }
}

export function newRecord(id: string, dir: string, placement: Placement): LibvirtVm {
  return {
    id,
    connection: placement.connection,
    pool: placement.pool,
    dir,
    definition: undefined as unknown as DomainDefinition,
    network: undefined as unknown as LibvirtVm['network'],
    ownVolumes: new Set(),
    diskVolume: '',
    ssh: undefined as unknown as SshEndpoint,
    started: false,
    transition: 0,
    settleExit: () => undefined,
    exitSettled: false,
    snapshots: new Map(),
    lastFileNumber: 0,
  }
}

/** What a prepared VM made, removed again (its preparation failed). */
export async function discardPrepared(record: LibvirtVm): Promise<void> {
  if (record.network) await record.connection.tryRun(['net-destroy', record.network.name])
  for (const volume of record.ownVolumes) await record.connection.tryRun(['vol-delete', '--pool', record.pool.name, volume])
  await rm(record.dir, { recursive: true, force: true })
}

/**
 * SSH goes to the address the guest leased, looked up on every connection attempt (it appears
 * only once the guest has asked for it): straight to it when the daemon is on this machine, and
 * through the hypervisor host (ssh2's forwardOut, a jump host) when it is remote.
 */
export function endpointFor(record: LibvirtVm, keys: Pick<SshEndpoint, 'user' | 'privateKey' | 'hostKey'>): SshEndpoint {
  const endpoint: SshEndpoint = {
    ...keys,
    host: `${record.definition.name} (no lease yet)`,
    port: 22,
    connect: async () => {
      const address = await leasedAddress(record)
      if (!address) throw new SshError(`no DHCP lease yet for ${record.definition.mac} on network ${record.network.name}`, endpoint.host)
      endpoint.host = address
      const jump = record.connection.jump
      return jump ? jump.forward(address, 22) : connect({ host: address, port: 22 }).setNoDelay(true)
    },
  }
  return endpoint
}

export function handleFor(id: string, spec: ResolvedSpec, record: LibvirtVm, guest: { readyMarker?: string; failureMarker?: string; readyCommand?: string; restoredFrom?: string }): VmHandle {
  const exited = new Promise<ExitInfo>((resolve) => {
    record.settleExit = (info) => {
      if (record.exitSettled) return
      record.exitSettled = true
      resolve(info)
    }
  })
  return {
    id,
    name: spec.name,
    backend: 'libvirt',
    spec,
    ssh: record.ssh,
    readyMarker: guest.readyMarker,
    failureMarker: guest.failureMarker,
    readyCommand: guest.readyCommand,
    restoredFrom: guest.restoredFrom,
    accel: record.definition.type === 'kvm' ? 'kvm' : 'tcg',
    exited,
  }
}

/** A locally administered unicast MAC in QEMU's 52:54:00 range (the networks' own use 52:54:00:12:…). */
function randomMac(): string {
  const bytes = randomBytes(3)
  bytes[0] = (bytes[0] as number) | 0x80
  return `52:54:00:${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':')}`
}
