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
 * The warm pool size a machine gets when its config says none, from what the host has.
 *
 * - TCG: every vCPU of a reloading VM is a host thread, busy for the whole reload (QEMU translates
 *   the guest's code afresh after every state load). One reload still fits beside a test whose
 *   guest takes every core, because that guest mostly waits for the next command: on 2 cores,
 *   over 50 tiny tests and 20 Debian tests (bench/clean-state.ts), a pool of 1 finished sooner
 *   than no pool (0.53x and 0.84x) and sooner than a pool of 2, for a 1-vCPU and a 2-vCPU guest
 *   alike. A second reload needs cores of its own: `floor((cores - guestCpus) / guestCpus)`, at
 *   most {@link maxDefaultPoolSize}. No pool on one core, or for a guest with more vCPUs than the
 *   host has cores.
 * - KVM: an idle vCPU sleeps in the host kernel and a reload costs little CPU, so the pool is kept
 *   (at least 1) even where cores are few, and 2 where any core is spare.
 * - No accelerator (the no-op backend): VMs cost nothing, the full default.
 *
 * A `pool:` in the machine config overrides this.
 */
export function defaultPoolSize(host: PoolHost): number {
  const guestCpus = Math.max(1, Math.floor(host.guestCpus))
  const cores = Math.floor(host.cores)
  const spare = cores - guestCpus
  if (host.accel === 'none') return maxDefaultPoolSize
  if (host.accel === 'kvm') return spare >= 1 ? maxDefaultPoolSize : 1
  if (cores < 2 || spare < 0) return 0
  return Math.min(maxDefaultPoolSize, Math.max(1, Math.floor(spare / guestCpus)))
}
