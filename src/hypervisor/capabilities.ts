import type { KeptVm } from './keep/kept-vms.js'
import type { Hypervisor, SnapshotInfo, SnapshotOptions, VmHandle } from './hypervisor.js'

/*
 * What a backend may offer beyond the Hypervisor contract, one interface per capability, each
 * with a guard that tells whether a backend has it. The Vm API turns a missing capability into
 * an UnsupportedError. (SSH and the console need no guard: a handle's `ssh` is undefined, and
 * `consoleEndpoint` is `{ kind: 'none' }`, where a backend has none.)
 */

/** Pauses and resumes the guest's vCPUs; its memory, devices and connections stay. */
export interface Suspending {
  suspend(vm: VmHandle): Promise<void>
  resume(vm: VmHandle): Promise<void>
}

export interface RestoreOptions {
  signal?: AbortSignal
  /** Leave the guest paused once restored (a group is resumed together, once all its members are back). */
  leavePaused?: boolean
}

/** Saves and restores the whole VM (memory, devices, disk) by name. */
export interface Snapshotting {
  /** Saves the whole VM under `name`, replacing an earlier one of that name. */
  snapshot(vm: VmHandle, name: string, options?: SnapshotOptions): Promise<SnapshotInfo>
  /** Puts the VM back to the state saved under `name`; the guest's network connections do not survive. */
  restore(vm: VmHandle, name: string, options?: RestoreOptions): Promise<void>
  listSnapshots(vm: VmHandle): Promise<SnapshotInfo[]>
}

/** Leaves a VM running beyond this process for a person to debug (VMHARNESS_KEEP=on-failure). */
export interface Keeping {
  /** The VM stops being managed by the backend: destroy no longer reaches it. */
  keep(vm: VmHandle, reason: string): Promise<KeptVm>
}

/** Takes a VM's link on one of its networks down and up again. */
export interface Linking {
  /** The guest sees its carrier drop (or come back) on the NIC of `network`. */
  setLink(vm: VmHandle, network: string, up: boolean): Promise<void>
}

export function canSuspend(hypervisor: Hypervisor): hypervisor is Hypervisor & Suspending {
  const candidate = hypervisor as Hypervisor & Partial<Suspending>
  return typeof candidate.suspend === 'function' && typeof candidate.resume === 'function'
}

export function canSnapshot(hypervisor: Hypervisor): hypervisor is Hypervisor & Snapshotting {
  const candidate = hypervisor as Hypervisor & Partial<Snapshotting>
  return typeof candidate.snapshot === 'function' && typeof candidate.restore === 'function' && typeof candidate.listSnapshots === 'function'
}

export function canKeep(hypervisor: Hypervisor): hypervisor is Hypervisor & Keeping {
  return typeof (hypervisor as Hypervisor & Partial<Keeping>).keep === 'function'
}

export function canLink(hypervisor: Hypervisor): hypervisor is Hypervisor & Linking {
  return typeof (hypervisor as Hypervisor & Partial<Linking>).setLink === 'function'
}
