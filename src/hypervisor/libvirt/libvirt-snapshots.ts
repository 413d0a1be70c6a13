import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SnapshotError, SpecError } from '../../errors.js'
import type { RestoreOptions } from '../capabilities.js'
import type { SnapshotInfo, SnapshotOptions, VmHandle } from '../hypervisor.js'
import type { DomainDefinition } from './domain-xml.js'
import type { LibvirtSnapshot, LibvirtVm } from './libvirt-vm.js'
import { attributeValue, replaceAll, unescapeXml } from './save-file.js'
import { createOverlay, deleteVolume, volumePath } from './storage-pool.js'

/** What an external snapshot's directory holds (snapshot.json): enough to clone it on its host. */
export interface LibvirtSavedState {
  backend: 'libvirt'
  uri: string
  pool: string
  stateVolume: string
  diskVolume: string
  seedVolume: string | undefined
  definition: DomainDefinition
  ssh: { user: string; hostKey: string }
  clientKey: string
  readyMarker: string | undefined
  failureMarker: string | undefined
  /** Read by resolveSpec for a clone's defaults. */
  launch: { memoryMiB: number; cpus: number; machine: 'pc' | 'microvm'; accel: 'kvm' | 'tcg' }
  savedAt: string
}

export async function takeLibvirtSnapshot(vm: VmHandle, record: LibvirtVm, name: string, options: SnapshotOptions): Promise<SnapshotInfo> {
  const kind = options.kind ?? 'internal'
  if (kind === 'internal') {
    if (options.dir) throw new SpecError('applies to external snapshots only', 'dir')
    const domain = record.definition.name
    // Names go after their options (--name, --snapshotname): virsh would read a bare '--halt' as an option.
    if (record.snapshots.get(name)?.kind === 'internal') await record.connection.run(['snapshot-delete', '--domain', domain, '--snapshotname', name])
    await record.connection.run(['snapshot-create-as', '--domain', domain, '--name', name], 10 * 60_000)
    const snapshot: LibvirtSnapshot = { name, kind, createdAt: new Date() }
    record.snapshots.set(name, snapshot)
    return { name, kind, path: undefined, createdAt: snapshot.createdAt }
  }
  return saveExternal(vm, record, name, options.dir)
}

/**
 * An external snapshot: `virsh save` (the domain stops, its RAM goes to a file), the disk as it
 * was then frozen, and the VM restored at once onto a new overlay over it, so it runs on. With a
 * directory given (a golden snapshot), the state, disk and seed are copies of their own that
 * outlive the run (vmh-keep-…); otherwise they belong to the VM and go with it.
 */
async function saveExternal(vm: VmHandle, record: LibvirtVm, name: string, dir: string | undefined): Promise<SnapshotInfo> {
  const { connection, pool, definition } = record
  const number = ++record.lastFileNumber
  const keep = dir !== undefined
  const prefix = keep ? `vmh-keep-${randomBytes(6).toString('hex')}` : `${definition.name}-snap${number}`
  const stateVolume = `${prefix}-state`
  const snapshotDir = dir ?? join(record.dir, `snapshot-${number}`)
  await mkdir(snapshotDir, { recursive: false, mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EEXIST') throw new SnapshotError(`directory ${snapshotDir} already exists`, name, { vm: vm.name })
    throw error
  })
  const made: string[] = []
  let stopped = false
  record.transition++
  try {
    await connection.run(['save', definition.name, volumePath(pool, stateVolume), '--running'], 10 * 60_000)
    stopped = true
    made.push(stateVolume)
    // The save ended the (transient) domain and its snapshot metadata, and the VM goes on on a new overlay: its internal snapshots are gone.
    for (const [other, kept] of record.snapshots) if (kept.kind === 'internal') record.snapshots.delete(other)
    await connection.tryRun(['pool-refresh', pool.name])
    let diskVolume = record.diskVolume
    let seedVolume = definition.seed ? definition.seed.slice(pool.path.length + 1) : undefined
    if (keep) {
      diskVolume = `${prefix}-disk.qcow2`
      await connection.run(['vol-clone', '--pool', pool.name, record.diskVolume, diskVolume], 30 * 60_000)
      made.push(diskVolume)
      if (seedVolume) {
        await connection.run(['vol-clone', '--pool', pool.name, seedVolume, `${prefix}-seed.iso`])
        seedVolume = `${prefix}-seed.iso`
        made.push(seedVolume)
      }
    } else {
      record.ownVolumes.add(stateVolume)
    }
    const savedDisk = record.diskVolume
    // The VM runs on from the same state, on a new overlay over the disk as it was saved.
    await newOverlayOver(record, keep ? diskVolume : savedDisk)
    await restoreDomain(record, stateVolume, { diskFrom: volumePath(pool, savedDisk) })
    const saved: LibvirtSavedState = {
      backend: 'libvirt',
      uri: connection.uri,
      pool: pool.name,
      stateVolume,
      diskVolume,
      seedVolume,
      definition: { ...definition, disk: volumePath(pool, savedDisk) },
      ssh: { user: record.ssh.user, hostKey: record.ssh.hostKey },
      clientKey: record.ssh.privateKey,
      readyMarker: vm.readyMarker,
      failureMarker: vm.failureMarker,
      launch: { memoryMiB: definition.memoryMiB, cpus: definition.cpus, machine: vm.spec.machine, accel: vm.accel === 'kvm' ? 'kvm' : 'tcg' },
      savedAt: new Date().toISOString(),
    }
    await writeFile(join(snapshotDir, 'snapshot.json'), JSON.stringify(saved, null, 2), { mode: 0o600 })
    const snapshot: LibvirtSnapshot = { name, kind: 'external', createdAt: new Date(), dir: snapshotDir, stateVolume, diskVolume }
    record.snapshots.set(name, snapshot)
    return { name, kind: 'external', path: snapshotDir, createdAt: snapshot.createdAt }
  } catch (error) {
    await undoSave(record, { stopped, made, snapshotDir, stateVolume })
    throw error
  } finally {
    record.transition--
  }
}

/**
 * A snapshot that failed half way leaves nothing: its volumes and directory are removed, and a
 * VM that the save had stopped is brought back from the state file if it can be; else its exit is reported.
 */
async function undoSave(record: LibvirtVm, attempt: { stopped: boolean; made: string[]; snapshotDir: string; stateVolume: string }): Promise<void> {
  const { connection, pool } = record
  if (attempt.stopped && !/running|paused/.test(await connection.run(['domstate', record.definition.name]).catch(() => ''))) {
    const back = await restoreDomain(record, attempt.stateVolume, { diskFrom: undefined }).then(
      () => true,
      () => false,
    )
    if (!back) record.settleExit({ exitCode: null, signal: null, requested: false, stderr: 'libvirt: the VM was saved for a snapshot that failed, and could not be restored' })
  }
  for (const volume of attempt.made) {
    await deleteVolume(connection, pool, volume)
    record.ownVolumes.delete(volume)
  }
  await rm(attempt.snapshotDir, { recursive: true, force: true })
}

export async function restoreLibvirtSnapshot(vm: VmHandle, record: LibvirtVm, name: string, options: RestoreOptions): Promise<void> {
  const snapshot = record.snapshots.get(name)
  if (!snapshot) {
    const known = [...record.snapshots.keys()].map((n) => `'${n}'`).join(', ') || 'none'
    throw new SnapshotError(`no such snapshot in this VM (it has: ${known})`, name, { vm: vm.name })
  }
  record.transition++
  try {
    if (snapshot.kind === 'internal') {
      await revertInternal(record, name, options.leavePaused === true)
      return
    }
    await record.connection.run(['destroy', record.definition.name])
    // Internal snapshots lived in the old overlay and go with it.
    for (const [other, kept] of record.snapshots) if (kept.kind === 'internal') record.snapshots.delete(other)
    const previous = record.diskVolume
    await newOverlayOver(record, snapshot.diskVolume as string)
    if (![...record.snapshots.values()].some((s) => s.diskVolume === previous)) {
      await deleteVolume(record.connection, record.pool, previous)
      record.ownVolumes.delete(previous)
    }
    await restoreDomain(record, snapshot.stateVolume as string, { diskFrom: undefined, paused: options.leavePaused })
  } finally {
    record.transition--
  }
}

/**
 * libvirt's snapshot-revert starts a new QEMU process from the snapshot (1.7 s a revert here,
 * measured); loading it in the running QEMU through libvirt's monitor passthrough takes 0.2 s.
 * So the load goes through the monitor (libvirt marks the domain tainted for it), and
 * snapshot-revert is used where the monitor is refused or VMHARNESS_LIBVIRT_REVERT=libvirt asks.
 */
async function revertInternal(record: LibvirtVm, name: string, leavePaused: boolean): Promise<void> {
  const domain = record.definition.name
  if (process.env.VMHARNESS_LIBVIRT_REVERT !== 'libvirt' && !/[\s"\\]/.test(name)) {
    const loaded = await record.connection.run(['qemu-monitor-command', '--domain', domain, '--hmp', '--cmd', `loadvm ${name}`]).then(
      (output) => output.trim() === '',
      () => false,
    )
    if (loaded) {
      if (leavePaused) await record.connection.run(['suspend', domain])
      return
    }
  }
  await record.connection.run(['snapshot-revert', '--domain', domain, '--snapshotname', name, leavePaused ? '--paused' : '--running'], 10 * 60_000)
}

/** Gives the VM a new overlay over `backing` as its disk. */
async function newOverlayOver(record: LibvirtVm, backing: string): Promise<void> {
  const overlay = `${record.definition.name}-disk-${++record.lastFileNumber}.qcow2`
  await createOverlay(record.connection, record.pool, overlay, backing)
  record.ownVolumes.add(overlay)
  record.diskVolume = overlay
  record.definition = { ...record.definition, disk: volumePath(record.pool, overlay) }
}

/**
 * `virsh restore` of a state file onto the VM's current disk: the saved XML is dumped, its disk
 * path replaced (the only part `restore --xml` may change besides the console's), and restored.
 */
export async function restoreDomain(record: LibvirtVm, stateVolume: string, options: { diskFrom: string | undefined; paused?: boolean }): Promise<void> {
  const { connection, pool } = record
  const statePath = volumePath(pool, stateVolume)
  const saved = await connection.run(['save-image-dumpxml', statePath, '--security-info'])
  const diskFrom = options.diskFrom ?? unescapeXml(/<source file='([^']+)'/.exec(saved)?.[1] ?? '')
  const xmlFile = join(record.dir, `restore-${++record.lastFileNumber}.xml`)
  await writeFile(xmlFile, replaceAll(saved, [[attributeValue(diskFrom), attributeValue(record.definition.disk), 'required']]), { mode: 0o600 })
  await connection.run(['restore', statePath, '--xml', xmlFile, ...(options.paused ? ['--paused'] : ['--running'])], 10 * 60_000)
}
