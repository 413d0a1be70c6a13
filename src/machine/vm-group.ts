import type { SnapshotInfo, SnapshotOptions } from '../hypervisor/hypervisor.js'
import type { Vm } from './vm.js'

/*
 * Machines that talk to each other are saved and restored at one instant. Each guest's TCP state
 * refers to the others': restoring one member alone wedges the connections between them
 * (measured), and members saved at different moments would disagree the same way.
 */

/** Pauses every member, saves each, then resumes them all and renews their clocks and RNGs. */
export async function snapshotTogether(vms: Vm[], name: string, options: (vm: Vm) => SnapshotOptions = () => ({})): Promise<SnapshotInfo[]> {
  const infos = await whilePaused(vms, async () => {
    const saved: SnapshotInfo[] = []
    for (const vm of vms) saved.push(await vm.saveOnly(name, options(vm)))
    return saved
  })
  await Promise.all(vms.map((vm) => vm.refreshAfterPause(`snapshot '${name}' was saved`)))
  return infos
}

/** Pauses every member, loads each one's snapshot, resumes them all, then reconnects to each. */
export async function restoreTogether(vms: Vm[], name: string, signal?: AbortSignal): Promise<void> {
  await whilePaused(vms, async () => {
    for (const vm of vms) await vm.restoreOnly(name, { signal, leavePaused: true })
  })
  await Promise.all(vms.map((vm) => vm.reconnect(signal)))
}

/**
 * Runs `work` with every member paused, and resumes every member it paused, whatever happens. The
 * first failure is thrown: of a pause, of the work, else of a resume (a guest left paused would
 * make the reconnect after it wait out its whole timeout).
 */
async function whilePaused<T>(vms: Vm[], work: () => Promise<T>): Promise<T> {
  const pauses = await Promise.allSettled(vms.map((vm) => vm.suspend()))
  const paused = vms.filter((_, index) => pauses[index]?.status === 'fulfilled')
  let outcome: { value: T } | { error: unknown }
  const pauseFailure = pauses.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  if (pauseFailure) outcome = { error: pauseFailure.reason }
  else outcome = await work().then((value) => ({ value }), (error: unknown) => ({ error }))
  const resumes = await Promise.allSettled(paused.map((vm) => vm.resume()))
  if ('error' in outcome) throw outcome.error
  const resumeFailure = resumes.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  if (resumeFailure) throw resumeFailure.reason
  return outcome.value
}
