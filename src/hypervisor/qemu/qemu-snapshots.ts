import { constants } from 'node:fs'
import { copyFile, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { SnapshotError } from '../../errors.js'
import type { SnapshotInfo } from '../hypervisor.js'
import { migrateToFile } from './migration-file.js'
import type { QemuVm } from './qemu-vm.js'
import type { QmpClient } from './qmp-client.js'
import { runJob } from './qmp-jobs.js'
import { recordedPath, savedStateFiles, writeSavedStateMeta } from './saved-state.js'

const snapshotTimeoutMs = 120_000

export interface QemuSnapshot {
  info: SnapshotInfo
  /** The block node an internal snapshot lives in. */
  node?: string
}

/** `snapshot-save` into the top overlay: RAM and devices go into the same qcow2 as the disk's state. */
export async function saveInternalSnapshot(record: QemuVm, qmp: QmpClient, name: string, existing: QemuSnapshot | undefined): Promise<QemuSnapshot> {
  try {
    if (existing?.node) await runJob(qmp, 'snapshot-delete', { tag: name, devices: [existing.node] }, snapshotTimeoutMs)
    await runJob(qmp, 'snapshot-save', { tag: name, vmstate: record.diskNode, devices: [record.diskNode] }, snapshotTimeoutMs)
  } catch (error) {
    throw new SnapshotError(`could not be saved: ${(error as Error).message}`, name, { cause: error })
  }
  return { info: { name, kind: 'internal', path: undefined, createdAt: new Date() }, node: record.diskNode }
}

/** `snapshot-load` in the same process; the VM runs afterwards whatever state it was in, unless asked to stay paused. */
export async function loadInternalSnapshot(record: QemuVm, qmp: QmpClient, snapshot: QemuSnapshot, leavePaused = false): Promise<void> {
  const name = snapshot.info.name
  if (snapshot.node !== record.diskNode) {
    throw new SnapshotError('lived in a disk layer that a later external snapshot or restore replaced; take it again', name)
  }
  try {
    // Paused first: a guest that panicked with panic=-1 may have asked for a reset an instant
    // earlier. QEMU handles that request between main-loop rounds; arriving after the load, it
    // rebooted the freshly loaded guest (a flaky test under load). Once `stop` has returned, the
    // vCPUs can ask for nothing more, and the pending reset is handled before the next command.
    await qmp.execute('stop')
    await runJob(qmp, 'snapshot-load', { tag: name, vmstate: snapshot.node, devices: [snapshot.node] }, snapshotTimeoutMs)
    const status = await qmp.execute<{ running: boolean }>('query-status')
    if (leavePaused && status.running) await qmp.execute('stop')
    if (!leavePaused && !status.running) await qmp.execute('cont')
  } catch (error) {
    throw new SnapshotError(`could not be restored: ${(error as Error).message}`, name, { cause: error })
  }
}

/**
 * Pauses the VM, freezes its disk (a new overlay takes the writes from now on), writes a copy of
 * the frozen layer and the RAM state into `dir`, and resumes. `dir` must not exist yet.
 */
export async function saveExternalSnapshot(
  record: QemuVm,
  qmp: QmpClient,
  qemuImg: string,
  name: string,
  dir: string,
  markers: { readyMarker: string | undefined; failureMarker: string | undefined },
): Promise<QemuSnapshot> {
  try {
    await mkdir(dir, { mode: 0o700 })
  } catch (error) {
    throw new SnapshotError(`cannot create ${dir}: ${(error as Error).message} (the directory must not exist yet)`, name, { cause: error })
  }
  const { running } = await qmp.execute<{ running: boolean }>('query-status')
  try {
    if (running) await qmp.execute('stop')
    const frozen = record.launch.disk
    const top = join(record.dir, `disk-${++record.lastFileNumber}.qcow2`)
    const topNode = `disk${record.lastFileNumber}`
    await qmp.execute('blockdev-snapshot-sync', { 'node-name': record.diskNode, 'snapshot-file': top, 'snapshot-node-name': topNode, format: 'qcow2' })
    record.launch.disk = top
    record.diskNode = topNode
    const frozenCopy = join(dir, savedStateFiles.disk)
    await copyFile(frozen, frozenCopy, constants.COPYFILE_FICLONE)
    // The frozen layer may lie on an earlier layer inside the VM directory, which goes away; point it at that layer's kept copy.
    await execa(qemuImg, ['rebase', '-u', '-F', 'qcow2', '-b', recordedPath(dir, record.diskBacking), frozenCopy], { stdin: 'ignore' })
    record.diskBacking = frozenCopy
    await migrateToFile(qmp, join(record.dir, 'migrate.sock'), join(dir, savedStateFiles.state), snapshotTimeoutMs)
    if (record.launch.seedIso) await copyFile(record.launch.seedIso, join(dir, savedStateFiles.seed))
    await copyFile(record.launch.consoleLog, join(dir, savedStateFiles.console)).catch(() => undefined)
    const { accel, machine, cpuModel, memoryMiB, cpus, kernel, initrd, kernelArgs, networks, outsideAccess } = record.launch
    await writeSavedStateMeta(
      dir,
      {
        name,
        // The switches are this run's: a clone is told its own.
        launch: { accel, machine, cpuModel, memoryMiB, cpus, kernel, initrd, kernelArgs, networks: networks?.map((nic) => ({ ...nic, switchSocket: '' })), outsideAccess },
        hasSeed: record.launch.seedIso !== undefined,
        ssh: { user: record.ssh.user, hostKey: record.ssh.hostKey },
        readyMarker: markers.readyMarker,
        failureMarker: markers.failureMarker,
        createdAt: new Date().toISOString(),
      },
      record.ssh.privateKey,
    )
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    if (error instanceof SnapshotError) throw error
    throw new SnapshotError(`could not be saved: ${(error as Error).message}`, name, { cause: error })
  } finally {
    if (running) await qmp.execute('cont')
  }
  return { info: { name, kind: 'external', path: dir, createdAt: new Date() } }
}
