import { describe, expect, it } from 'vitest'
import { HostError } from '../../src/errors.js'
import { chooseBackend, hypervisorFor } from '../../src/hypervisor/router.js'

describe('chooseBackend', () => {
  it('returns a named backend as asked', async () => {
    expect(await chooseBackend('noop', [])).toBe('noop')
    expect(await chooseBackend('qemu', [])).toBe('qemu')
  })

  it("picks the first backend the host offers for 'auto'", async () => {
    const offers = [
      { name: 'qemu' as const, available: async () => false },
      { name: 'noop' as const, available: async () => true },
    ]
    expect(await chooseBackend('auto', offers)).toBe('noop')
  })

  it("says what to install when 'auto' finds nothing", async () => {
    const failure = await chooseBackend('auto', [{ name: 'qemu', available: async () => false }]).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(HostError)
    expect((failure as HostError).fix).toContain('qemu-system-x86')
  })

  it('keeps one instance per backend', () => {
    expect(hypervisorFor('noop')).toBe(hypervisorFor('noop'))
    expect(hypervisorFor('qemu').name).toBe('qemu')
  })
})
