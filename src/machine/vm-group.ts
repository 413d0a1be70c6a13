import type { SnapshotInfo, SnapshotOptions } from '../hypervisor/hypervisor.js'
import type { Vm } from './vm.js'

/*
 * Machines that talk to each other are saved and restored at one instant. Each guest's TCP state
 * refers to the others': restoring one member alone wedges the connections between them
 * (measured), and members saved at different moments would disagree the same way.
 */

/** Pauses every member, saves each, then resumes them all and renews their clocks and RNGs. */
export async function snapshotTogether(vms: Vm[], name: string, options: (vm: Vm) => SnapshotOptions = () => ({})): Promise<SnapshotInfo[]> {
  await Promise.all(vms.map((vm) => vm.suspend()))
  let infos: SnapshotInfo[]
  try {
    infos = []
    for (const vm of vms) infos.push(await vm.saveOnly(name, options(vm)))
  } finally {
    await Promise.all(vms.map((vm) => vm.resume()))
  }
  await Promise.all(vms.map((vm) => vm.refreshAfterPause(`snapshot '${name}' was saved`)))
  return infos
}

/** Pauses every member, loads each one's snapshot, resumes them all, then reconnects to each. */
export async function restoreTogether(vms: Vm[], name: string, signal?: AbortSignal): Promise<void> {
  await Promise.all(vms.map((vm) => vm.suspend()))
  try {
    for (const vm of vms) await vm.restoreOnly(name, { signal, leavePaused: true })
  } finally {
    await Promise.all(vms.map((vm) => vm.resume().catch(() => undefined)))
  }
  await Promise.all(vms.map((vm) => vm.reconnect(signal)))
}
