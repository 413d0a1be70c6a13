import { describe, expect, it } from 'vitest'
import { vmTest } from '../../fixtures/vm-test.js'
import { SpecError } from '../../src/errors.js'
import { NoopHypervisor } from '../../src/hypervisor/noop/noop-hypervisor.js'

const tiny = { image: 'tiny' as const }

describe('vmTest()', () => {
  it('refuses networks that name an unknown machine when it is called, before any test runs', () => {
    // The types refuse 'ghost' too; a caller in plain JavaScript, or with a list built at run time, reaches the check.
    const call = () => vmTest({ machines: { server: tiny, client: tiny }, networks: { lan: ['server', 'ghost' as 'client'] }, hypervisor: new NoopHypervisor() })
    expect(call).toThrow(SpecError)
    expect(call).toThrow(/^networks\.lan: names no such machine: 'ghost' \(the machines are 'server', 'client'\)/)
  })

  it('takes the same machines on networks that name them', () => {
    expect(typeof vmTest({ machines: { server: tiny, client: tiny }, networks: { lan: ['server', 'client'] }, hypervisor: new NoopHypervisor() })).toBe('function')
  })

  it("refuses a machine named 'networks', the fixture that holds the networks", () => {
    expect(() => vmTest({ machines: { networks: tiny } })).toThrow(/'networks' is reserved/)
  })

  it('refuses group members that disagree on how to roll back, naming both', () => {
    const call = () => vmTest({ machines: { server: { ...tiny, rollback: 'none' }, client: { ...tiny, rollback: 'reboot' } }, hypervisor: new NoopHypervisor() })
    expect(call).toThrow(/machines\.client\.rollback: 'server' says none and 'client' says reboot/)
  })
})
