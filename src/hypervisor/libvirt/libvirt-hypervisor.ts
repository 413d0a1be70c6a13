import { setTimeout as sleep } from 'node:timers/promises'
import { rm } from 'node:fs/promises'
import { HypervisorError, SpecError, UnsupportedError } from '../../errors.js'
import { consoleLogTail, consoleTextTail } from '../console-text.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import type { RestoreOptions, Snapshotting, Suspending } from '../capabilities.js'
import type { ConsoleEndpoint, Hypervisor, PrepareOptions, SnapshotInfo, SnapshotOptions, StartVmOptions, VmHandle, VmState } from '../hypervisor.js'
import { checkSnapshotName } from '../qemu/named-snapshots.js'
import { createDomain } from './domain-create.js'
import { DomainEvents } from './domain-events.js'
import { domainXml } from './domain-xml.js'
import { fenceStartedDomain, fencesAfterStart } from './fence-after-start.js'
import { ensureFenceFilter, fenceWanted } from './guest-fence.js'
import { libvirtAccelerator } from './libvirt-accelerator.js'
import { prepareLibvirtClone, readLibvirtSavedState } from './libvirt-clone.js'
import { libvirtConnection, type LibvirtConnection } from './libvirt-connection.js'
import { prepareLibvirtBoot, type Placement } from './libvirt-preparation.js'
import { restoreDomain, restoreLibvirtSnapshot, takeLibvirtSnapshot } from './libvirt-snapshots.js'
import { defaultLibvirtUri, parseLibvirtUri, parseLibvirtUris, pickForWorker, type LibvirtTarget } from './libvirt-uri.js'
import { leasedAddress, type LibvirtVm } from './libvirt-vm.js'
import { VmRegistry } from '../vm-registry.js'
import { registerRun, sweepDeadRuns } from './run-tag.js'
import { ensurePool, type Pool } from './storage-pool.js'
import { PromiseCache } from '../../common/promise-cache.js'

/** How long a clone's carrier stays down: long enough for the guest's carrier watch (tiny: every 0.2 s) to see it. */
const carrierDropMs = 600

/**
 * Runs each VM as a libvirt domain (libvirt's QEMU driver), on this machine or on a remote host
 * over qemu+ssh://, driven through virsh. Images travel to the host's storage pool once per
 * content; each VM gets its own overlay, seed, isolated network and console log there; its
 * address comes from its DHCP lease.
 */
export class LibvirtHypervisor implements Hypervisor, Suspending, Snapshotting {
  readonly name = 'libvirt' as const
  private readonly vms = new VmRegistry<LibvirtVm>()
  private readonly hosts = new PromiseCache<string, { connection: LibvirtConnection; pool: Pool; events: DomainEvents }>()

  /** The host a spec's VM goes to: its libvirtUri, else VMHARNESS_LIBVIRT_URI (unless empty), else qemu:///system; one of several per vitest worker. */
  target(spec: Pick<ResolvedSpec, 'libvirtUri'>, env: NodeJS.ProcessEnv = process.env): LibvirtTarget {
    const field = spec.libvirtUri ? 'libvirtUri' : env.VMHARNESS_LIBVIRT_URI ? 'libvirtUri (from VMHARNESS_LIBVIRT_URI)' : 'libvirtUri'
    return pickForWorker(parseLibvirtUris(spec.libvirtUri ?? (env.VMHARNESS_LIBVIRT_URI || defaultLibvirtUri), field), env)
  }

  /** The connection and pool of a host, opened once; the first use also sweeps what dead runs left there. */
  host(target: LibvirtTarget): Promise<{ connection: LibvirtConnection; pool: Pool; events: DomainEvents }> {
    return this.hosts.get(target.uri, async () => {
      const connection = await libvirtConnection(target)
      const pool = await ensurePool(connection)
      if (fenceWanted()) await ensureFenceFilter(connection)
      await sweepDeadRuns(connection, pool)
      await registerRun(connection, pool)
      return { connection, pool, events: new DomainEvents(connection.virshPath, connection.uri) }
    })
  }

  async prepare(spec: ResolvedSpec, options: PrepareOptions = {}): Promise<VmHandle> {
    if (spec.networks.length > 0) throw new UnsupportedError('libvirt', 'networks between machines (vde switches): use the qemu backend for them')
    if (spec.outsideAccess) throw new UnsupportedError('libvirt', 'outsideAccess')
    if (spec.cpuModel !== 'default') throw new UnsupportedError('libvirt', "cpuModel: 'max'")
    // A clone runs where its snapshot lives, unless the spec names a host (then it must be that one).
    const target = spec.restoreFrom && !spec.libvirtUri ? parseLibvirtUri((await readLibvirtSavedState(spec.restoreFrom)).uri, 'restoreFrom') : this.target(spec)
    const { connection, pool } = await this.host(target)
    const accel = await libvirtAccelerator(connection, spec)
    const placement: Placement = { connection, pool, accel }
    const { record, handle } = spec.restoreFrom ? await prepareLibvirtClone(spec, spec.restoreFrom, placement) : await prepareLibvirtBoot(spec, options, placement)
    this.vms.add(handle, record)
    return handle
  }

  async start(vm: VmHandle, options: StartVmOptions = {}): Promise<void> {
    const record = this.vms.lookUp(vm)
    if (record.started) throw new HypervisorError('is already started', { vm: vm.name })
    record.started = true
    const { events } = await this.host(record.connection.target)
    events.watch(record.definition.name, (event) => {
      if (!/^(Stopped|Crashed)$/.test(event.event) || record.transition > 0) return
      record.lastStop = `${event.event} ${event.detail}`
      record.settleExit({ exitCode: null, signal: null, requested: record.stopping !== undefined, stopMethod: record.stopping, stderr: `libvirt: ${event.event} ${event.detail}`.trim() })
    })
    if (record.incomingState) {
      const state = record.incomingState
      record.incomingState = undefined
      await restoreDomain(record, state, { diskFrom: record.definition.disk, paused: options.leavePaused })
      await record.connection.tryRun(['vol-delete', '--pool', record.pool.name, state])
      record.ownVolumes.delete(state)
      // The clone's guest still holds the address of its original's network: a carrier drop makes it ask again.
      if (options.leavePaused) record.leasePending = true
      else await this.renewLease(record)
      return
    }
    const fenceAfterStart = fencesAfterStart(record.definition)
    try {
      await createDomain(record, { fenceAfterStart })
    } catch (error) {
      const message = (error as Error).message
      if (/already exists/.test(message)) {
        throw new HypervisorError(`a domain named ${record.definition.name} already exists on ${record.connection.uri} (${message}): remove it (virsh undefine / destroy) if nothing needs it`, { vm: vm.name, cause: error })
      }
      throw new HypervisorError(`libvirt could not start the domain: ${message}`, { vm: vm.name, cause: error, consoleTail: await this.consoleTail(vm, 20) })
    }
    if (fenceAfterStart) await fenceStartedDomain(record, vm.name)
  }

  async stop(vm: VmHandle, timeoutMs: number): Promise<void> {
    const record = this.vms.find(vm)
    if (!record || !record.started || record.exitSettled) return
    const domain = record.definition.name
    record.stopping = 'powerdown'
    if (timeoutMs > 0 && (await record.connection.tryRun(['shutdown', domain]))) {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline && !record.exitSettled) {
        if (/shut off|not found/i.test(await this.domainState(record).catch(() => ''))) break
        await sleep(200)
      }
    }
    if (!/shut off|not found/i.test(await this.domainState(record).catch(() => ''))) {
      record.stopping = 'sigkill'
      await record.connection.tryRun(['destroy', domain])
    }
    record.settleExit({ exitCode: null, signal: null, requested: true, stopMethod: record.stopping, stderr: '' })
  }

  async suspend(vm: VmHandle): Promise<void> {
    await this.vms.lookUp(vm).connection.run(['suspend', this.vms.lookUp(vm).definition.name])
  }

  async resume(vm: VmHandle): Promise<void> {
    const record = this.vms.lookUp(vm)
    await record.connection.run(['resume', record.definition.name])
    if (record.leasePending) {
      record.leasePending = false
      await this.renewLease(record)
    }
  }

  async destroy(vm: VmHandle): Promise<void> {
    const record = this.vms.find(vm)
    if (!record) return
    this.vms.delete(vm)
    const { connection, pool } = record
    const domain = record.definition.name
    record.stopping ??= 'sigkill'
    ;(await this.host(connection.target)).events.unwatch(domain)
    for (const [name, snapshot] of record.snapshots) if (snapshot.kind === 'internal') await connection.tryRun(['snapshot-delete', domain, name, '--metadata'])
    await connection.tryRun(['destroy', domain])
    await connection.tryRun(['undefine', domain, '--snapshots-metadata'])
    await connection.tryRun(['net-destroy', record.network.name])
    await connection.tryRun(['pool-refresh', pool.name])
    for (const volume of record.ownVolumes) await connection.tryRun(['vol-delete', '--pool', pool.name, volume])
    record.settleExit({ exitCode: null, signal: null, requested: true, stopMethod: record.stopping, stderr: '' })
    await rm(record.dir, { recursive: true, force: true })
  }

  async state(vm: VmHandle): Promise<VmState> {
    const record = this.vms.find(vm)
    if (!record) return { status: 'destroyed' }
    if (!record.started) return { status: 'prepared' }
    const state = await this.domainState(record)
    if (/^running/.test(state)) return { status: 'running', detail: state }
    if (/^paused/.test(state)) return { status: 'paused', detail: state }
    if (/crashed/.test(state)) return { status: 'crashed', detail: state }
    // A guest that powered itself off stopped; QEMU ending any other way on its own is a crash.
    const stopped = record.stopping !== undefined || record.lastStop === 'Stopped Shutdown' || /shut off \(shutdown\)/.test(state)
    return { status: stopped ? 'stopped' : 'crashed', detail: state }
  }

  /** The address the guest leased on its network, as libvirt's DHCP server reports it. */
  async guestIp(vm: VmHandle, network?: string): Promise<string> {
    const record = this.vms.lookUp(vm)
    if (network !== undefined) throw new SpecError(`machine '${vm.name}' is on no network (the libvirt backend gives each VM its own management network only)`, 'network')
    const deadline = Date.now() + (vm.spec.bootTimeoutMs ?? (vm.accel === 'kvm' ? 30_000 : 120_000))
    for (;;) {
      const address = await leasedAddress(record)
      if (address) return address
      if (Date.now() > deadline) {
        throw new HypervisorError(`no DHCP lease for its NIC (${record.definition.mac}) on network ${record.network.name} in time`, { vm: vm.name, consoleTail: await this.consoleTail(vm, 20) })
      }
      await sleep(300)
    }
  }

  async snapshot(vm: VmHandle, name: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    checkSnapshotName(name)
    return takeLibvirtSnapshot(vm, this.vms.lookUp(vm), name, options)
  }

  async restore(vm: VmHandle, name: string, options: RestoreOptions = {}): Promise<void> {
    await restoreLibvirtSnapshot(vm, this.vms.lookUp(vm), name, options)
  }

  async listSnapshots(vm: VmHandle): Promise<SnapshotInfo[]> {
    return [...this.vms.lookUp(vm).snapshots.values()].map((s) => ({ name: s.name, kind: s.kind, path: s.dir, createdAt: s.createdAt }))
  }

  consoleEndpoint(vm: VmHandle): ConsoleEndpoint {
    this.vms.lookUp(vm)
    return { kind: 'none' }
  }

  async consoleTail(vm: VmHandle, lines: number): Promise<string> {
    const record = this.vms.find(vm)
    if (!record) return ''
    const path = record.definition.consoleLog
    if (!record.connection.jump) return consoleLogTail(path, lines)
    return consoleTextTail(await record.connection.jump.readFrom(path, 0).catch(() => Buffer.alloc(0)), lines)
  }

  /** The domain XML a VM runs with, for reproducing it by hand. */
  domainXml(vm: VmHandle): string {
    return domainXml(this.vms.lookUp(vm).definition)
  }

  /** Where the VM's console log is on its host. */
  consoleLogPath(vm: VmHandle): string {
    return this.vms.lookUp(vm).definition.consoleLog
  }

  private async renewLease(record: LibvirtVm): Promise<void> {
    const { connection, definition } = record
    await connection.run(['domif-setlink', definition.name, definition.mac, 'down'])
    await sleep(carrierDropMs)
    await connection.run(['domif-setlink', definition.name, definition.mac, 'up'])
  }

  private async domainState(record: LibvirtVm): Promise<string> {
    try {
      return (await record.connection.run(['domstate', '--reason', record.definition.name])).trim()
    } catch (error) {
      // Only a domain libvirt does not know is gone; any other failure is not taken for it.
      if (/Domain not found|failed to get domain/i.test((error as Error).message)) return `not found (${(error as Error).message})`
      throw error
    }
  }
}
