/** What the default warm pool size depends on. */
export interface PoolHost {
  /** Host CPUs this process may use (`os.availableParallelism()`). */
  cores: number
  /** The accelerator the machine's VMs run under (the probe's verdict). */
  accel: 'kvm' | 'tcg' | 'none'
  /** vCPUs of one VM of the machine. */
  guestCpus: number
}

/** The most clean VMs a default pool keeps ready: two hide a reload behind tests of any length. */
export const maxDefaultPoolSize = 2

/**
 * The warm pool size a machine gets when its config says none: as many reloading VMs as have
 * cores of their own beside the VM the test is using, at most {@link maxDefaultPoolSize}.
 *
 * - TCG: every vCPU of a reloading VM is a host thread busy for the whole reload (QEMU translates
 *   the guest's code afresh after every state load), so a reload needs `guestCpus` cores that the
 *   test's own VM is not using. The spare cores are `cores - guestCpus`; the pool is
 *   `floor(spare / guestCpus)`, 0 when that is under one reload's worth. No core is set aside for
 *   node/vitest: they mostly wait on the guest, and on a 2-core host a pool of 1 for a 1-vCPU guest
 *   finished a suite sooner than no pool (bench/clean-state.ts), while a 2-vCPU Debian guest with a
 *   pool of 2 was slower than with none (reloads took the cores the test's guest needed).
 * - KVM: an idle vCPU sleeps in the host kernel and a reload costs little CPU, so the pool is kept
 *   (at least 1) even where cores are few, and 2 where any core is spare.
 * - No accelerator (the no-op backend): VMs cost nothing, the full default.
 *
 * A `pool:` in the machine config overrides this.
 */
export function defaultPoolSize(host: PoolHost): number {
  const guestCpus = Math.max(1, Math.floor(host.guestCpus))
  const spare = Math.floor(host.cores) - guestCpus
  if (host.accel === 'none') return maxDefaultPoolSize
  if (host.accel === 'kvm') return spare >= 1 ? maxDefaultPoolSize : 1
  return Math.max(0, Math.min(maxDefaultPoolSize, Math.floor(spare / guestCpus)))
}
