import { SpecError } from '../../errors.js'

export type KeepMode = 'never' | 'on-failure'

/**
 * VMHARNESS_KEEP=on-failure keeps a failed test's VM running after the run for debugging. Its
 * QEMU must then be able to outlive the worker, so VMs start detached (not tied to their owner
 * by a parent-death signal); the run still kills every VM it did not keep when it exits.
 */
export function keepMode(env: NodeJS.ProcessEnv = process.env): KeepMode {
  const value = env.VMHARNESS_KEEP
  if (value === undefined || value === '' || value === 'never' || value === '0') return 'never'
  if (value === 'on-failure') return 'on-failure'
  throw new SpecError(`must be 'on-failure' or 'never', got '${value}'`, 'VMHARNESS_KEEP')
}
