import { join } from 'node:path'
import { SnapshotError, SpecError } from '../../errors.js'
import type { RestoreOptions } from '../capabilities.js'
import type { SnapshotInfo, SnapshotOptions, VmHandle } from '../hypervisor.js'
import type { QemuHostTools } from './host-tools.js'
import { loadOnNextLaunch } from './incoming-state.js'
import { launchQemu } from './launch.js'
import { loadInternalSnapshot, saveExternalSnapshot, saveInternalSnapshot } from './qemu-snapshots.js'
import { monitorOf, type QemuVm } from './qemu-vm.js'
import { networkIds } from './qemu-argv.js'
import { readSavedState } from './saved-state.js'

/** Saves the VM under `name`: internal (default) into its own overlay, external into a directory of its own. */
export async function takeSnapshot(
  vm: VmHandle,
  record: QemuVm,
  name: string,
  options: SnapshotOptions,
  hostTools: () => Promise<QemuHostTools>,
): Promise<SnapshotInfo> {
  const qmp = monitorOf(record, vm.name)
  const kind = options.kind ?? 'internal'
  if (kind === 'external') {
    const { qemuImg } = await hostTools()
    const dir = options.dir ?? join(record.dir, `snapshot-${++record.lastFileNumber}`)
    const snapshot = await saveExternalSnapshot(record, qmp, qemuImg, name, dir, { readyMarker: vm.readyMarker, failureMarker: vm.failureMarker })
    record.snapshots.set(name, snapshot)
    return snapshot.info
  }
  if (options.dir) throw new SpecError('applies to external snapshots only', 'dir')
  const snapshot = await saveInternalSnapshot(record, qmp, name, record.snapshots.get(name))
  record.snapshots.set(name, snapshot)
  return snapshot.info
}

/** Puts the VM back to the snapshot saved as `name`: in the same process (internal), or by a relaunch (external). */
export async function restoreSnapshot(vm: VmHandle, record: QemuVm, name: string, hostTools: () => Promise<QemuHostTools>, options: RestoreOptions = {}): Promise<void> {
  const snapshot = record.snapshots.get(name)
  if (!snapshot) {
    const known = [...record.snapshots.keys()].map((n) => `'${n}'`).join(', ') || 'none'
    throw new SnapshotError(`no such snapshot in this VM (it has: ${known})`, name, { vm: vm.name })
  }
  if (snapshot.info.kind === 'internal') {
    const qmp = monitorOf(record, vm.name)
    await loadInternalSnapshot(record, qmp, snapshot, options.leavePaused)
    // The load brings back the NIC's own link state but not its switch side's, which `block` set
    // too: a restored VM has every link up (a new process, after an external restore, has anyway).
    for (const nic of record.launch.networks ?? []) await qmp.execute('set_link', { name: networkIds(nic.index).device, up: true })
    return
  }
  await relaunchFrom(vm, record, snapshot.info.path ?? '', hostTools, options)
}

export function checkSnapshotName(name: unknown): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 64 || /[\0/]/.test(name)) {
    throw new SpecError('must be 1 to 64 characters, without "/" or NUL', 'snapshot name')
  }
}

/**
 * Restoring an external snapshot replaces the process: the old one is killed, a new one starts
 * on a fresh overlay over the frozen disk and loads the RAM state. Internal snapshots lived in
 * the old overlay and go with it.
 */
async function relaunchFrom(vm: VmHandle, record: QemuVm, from: string, hostTools: () => Promise<QemuHostTools>, options: RestoreOptions): Promise<void> {
  const saved = await readSavedState(from)
  const old = record.process
  record.process = undefined
  if (old && !old.exitInfo) {
    old.kill('SIGKILL')
    await old.exited
  }
  record.qmp?.close()
  record.qmp = undefined
  for (const [name, snapshot] of record.snapshots) if (snapshot.info.kind === 'internal') record.snapshots.delete(name)
  await loadOnNextLaunch(record, saved, (await hostTools()).qemuImg)
  await launchQemu(vm.name, record, await hostTools(), options.signal, { leavePaused: options.leavePaused })
}
