import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SnapshotError } from '../../errors.js'
import { runDir } from '../../host/run-dir.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import { discardPrepared, endpointFor, handleFor, newRecord, vmNames, type Placement, type PreparedLibvirtVm } from './libvirt-preparation.js'
import type { LibvirtSavedState } from './libvirt-snapshots.js'
import { fenceWanted, withFence } from './guest-fence.js'
import { createManagementNetwork } from './management-network.js'
import { runTag } from './run-tag.js'
import { attributeValue, replaceAll, rewriteSavedDomainXml, textValue } from './save-file.js'
import { createOverlay, volumeExists, volumePath } from './storage-pool.js'

export async function readLibvirtSavedState(dir: string): Promise<LibvirtSavedState> {
  let saved: LibvirtSavedState
  try {
    saved = JSON.parse(await readFile(join(dir, 'snapshot.json'), 'utf8')) as LibvirtSavedState
  } catch (error) {
    throw new SnapshotError(`cannot read ${join(dir, 'snapshot.json')}: ${(error as Error).message}`, dir, { cause: error })
  }
  if (saved.backend !== 'libvirt') throw new SnapshotError(`was saved by the ${saved.backend ?? 'qemu'} backend, not libvirt: start the clone with that backend`, dir)
  return saved
}

/**
 * A clone of an external snapshot, on the host the snapshot lives on: its own overlay over the
 * frozen disk, its own network, and its own copy of the state file whose header names the clone
 * (libvirt refuses a second domain with the original's name or UUID). It keeps the guest's MAC:
 * that is part of the saved device state, and the network is its own.
 */
export async function prepareLibvirtClone(spec: ResolvedSpec, from: string, placement: Placement): Promise<PreparedLibvirtVm> {
  const saved = await readLibvirtSavedState(from)
  const { connection, pool } = placement
  if (saved.uri !== connection.uri) throw new SnapshotError(`lives on ${saved.uri}, but this VM runs on ${connection.uri}: a clone runs where its snapshot is`, from)
  if (saved.pool !== pool.name) throw new SnapshotError(`lives in libvirt pool '${saved.pool}', but this VM uses pool '${pool.name}' (VMHARNESS_LIBVIRT_POOL): use the pool it was saved in`, from)
  for (const volume of [saved.stateVolume, saved.diskVolume, ...(saved.seedVolume ? [saved.seedVolume] : [])]) {
    if (!(await volumeExists(connection, pool, volume))) throw new SnapshotError(`its volume ${volume} is gone from pool '${pool.name}' on ${connection.uri}`, from)
  }
  const { id, domain, bridge } = await vmNames()
  const dir = await (await runDir()).vmDir(id)
  const record = newRecord(id, dir, placement)
  try {
    const overlay = `${domain}-disk-0.qcow2`
    await createOverlay(connection, pool, overlay, saved.diskVolume)
    record.ownVolumes.add(overlay)
    record.diskVolume = overlay
    const state = `${domain}-incoming-state`
    await connection.run(['vol-clone', '--pool', pool.name, saved.stateVolume, state], 10 * 60_000)
    record.ownVolumes.add(state)
    record.network = await createManagementNetwork(connection, domain, bridge, saved.definition.mac, dir)
    const consoleLog = `${domain}-console.log`
    record.ownVolumes.add(consoleLog)
    const old = saved.definition
    record.definition = {
      ...old,
      name: domain,
      uuid: randomUUID(),
      disk: volumePath(pool, overlay),
      seed: saved.seedVolume ? volumePath(pool, saved.seedVolume) : undefined,
      network: record.network.name,
      consoleLog: volumePath(pool, consoleLog),
      run: await runTag(),
    }
    // A guest saved unfenced (VMHARNESS_LIBVIRT_FENCE=off) is fenced when this run fences its guests.
    const addFence = old.fenced === false && fenceWanted()
    if (addFence) record.definition.fenced = true
    const fresh = record.definition
    await rewriteSavedDomainXml(connection, pool, state, dir, (xml) => {
      const renamed = replaceAll(xml, [
        [attributeValue(old.disk), attributeValue(fresh.disk), 'required'],
        ...(old.seed && fresh.seed ? [[attributeValue(old.seed), attributeValue(fresh.seed), 'required'] as [string, string, 'required']] : []),
        [attributeValue(old.consoleLog), attributeValue(fresh.consoleLog), 'required'],
        [`<name>${textValue(old.name)}</name>`, `<name>${textValue(fresh.name)}</name>`, 'required'],
        [`<uuid>${old.uuid}</uuid>`, `<uuid>${fresh.uuid}</uuid>`, 'required'],
        [`network=${attributeValue(old.network)}`, `network=${attributeValue(fresh.network)}`, 'required'],
        // libvirt writes metadata back with either quote.
        [`run='${old.run}'`, `run='${fresh.run}'`],
        [`run="${old.run}"`, `run="${fresh.run}"`],
      ])
      return addFence ? withFence(renamed) : renamed
    })
    record.incomingState = state
    record.ssh = endpointFor(record, { user: saved.ssh.user, privateKey: saved.clientKey, hostKey: saved.ssh.hostKey })
    return { record, handle: handleFor(id, spec, record, { readyMarker: saved.readyMarker, failureMarker: saved.failureMarker, restoredFrom: from }) }
  } catch (error) {
    await discardPrepared(record)
    throw error
  }
}
