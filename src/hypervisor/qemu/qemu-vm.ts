import { HypervisorError } from '../../errors.js'
import { VmRegistry } from '../vm-registry.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import type { ExitInfo, SshEndpoint, VmHandle } from '../hypervisor.js'
import type { QemuLaunch } from './qemu-argv.js'
import type { QemuProcess } from './qemu-process.js'
import type { QemuSnapshot } from './qemu-snapshots.js'
import type { QmpClient } from './qmp-client.js'

/** All the QEMU backend knows of one VM: its files, its launch, its process and monitor, its snapshots. */
export interface QemuVm {
  dir: string
  launch: QemuLaunch
  /** The handle's own endpoint object: its port is filled in at start. */
  ssh: SshEndpoint
  process?: QemuProcess
  qmp?: QmpClient
  settleExit: (info: ExitInfo) => void
  /** The block node on top of the disk chain: external snapshots push new ones. */
  diskNode: string
  /** What the top overlay's contents lie on, as a file outside the VM directory (the image, or a snapshot's frozen disk). */
  diskBacking: string
  /** The state file the next start loads instead of booting. */
  incomingState?: string
  snapshots: Map<string, QemuSnapshot>
  /** The number in the newest file name made in the VM directory (disk-N.qcow2, snapshot-N), so each new name is unique. */
  lastFileNumber: number
}

export interface GuestFacts {
  readyMarker: string | undefined
  failureMarker: string | undefined
  readyCommand?: string
  restoredFrom?: string
}

/** A new VM's record and the handle that stands for it; its `exited` settles through the record's `settleExit`. */
export function newQemuVm(
  id: string,
  spec: ResolvedSpec,
  parts: Pick<QemuVm, 'dir' | 'launch' | 'ssh' | 'diskBacking'>,
  guest: GuestFacts,
): { record: QemuVm; handle: VmHandle } {
  let settleExit!: (info: ExitInfo) => void
  const exited = new Promise<ExitInfo>((resolve) => (settleExit = resolve))
  const record: QemuVm = { ...parts, settleExit, diskNode: 'disk0', snapshots: new Map(), lastFileNumber: 0 }
  const handle: VmHandle = {
    id,
    name: spec.name,
    backend: 'qemu',
    spec,
    ssh: parts.ssh,
    readyMarker: guest.readyMarker,
    failureMarker: guest.failureMarker,
    readyCommand: guest.readyCommand,
    restoredFrom: guest.restoredFrom,
    accel: parts.launch.accel,
    exited,
  }
  return { record, handle }
}

/** The QEMU VMs one backend instance manages, by handle, and their monitors. */
export class QemuVms extends VmRegistry<QemuVm> {
  /** The running VM's QMP monitor; a HypervisorError when it has none. */
  monitor(handle: VmHandle): QmpClient {
    return monitorOf(this.lookUp(handle), handle.name)
  }
}

export function monitorOf(record: QemuVm, vmName: string): QmpClient {
  if (!record.qmp || record.qmp.closed) throw new HypervisorError('is not running (no QMP monitor)', { vm: vmName })
  return record.qmp
}
