import { describe, expect, it } from 'vitest'
import { SpecError } from '../../src/errors.js'
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/libvirt-hypervisor.js'
import { chooseBackend, hypervisorFor } from '../../src/hypervisor/router.js'
import { resolveSpec } from '../../src/spec/vm-spec.js'

/** The SpecError a call throws (failing the test when it throws nothing or something else). */
function specErrorOf(attempt: () => unknown): SpecError {
  try {
    attempt()
  } catch (error) {
    expect(error).toBeInstanceOf(SpecError)
    return error as SpecError
  }
  throw new Error('expected a SpecError, but nothing was thrown')
}

describe('the libvirt backend in the router', () => {
  it("returns 'libvirt' when asked, without looking at what the host offers", async () => {
    let looked = 0
    const offers = [{ name: 'qemu' as const, available: async () => (looked++, true) }]
    expect(await chooseBackend('libvirt', offers)).toBe('libvirt')
    expect(looked).toBe(0)
    // 'auto' does look, and takes what is offered.
    expect(await chooseBackend('auto', offers)).toBe('qemu')
    expect(looked).toBe(1)
  })

  it('gives one LibvirtHypervisor per process', () => {
    const libvirt = hypervisorFor('libvirt')
    expect(libvirt).toBeInstanceOf(LibvirtHypervisor)
    expect(libvirt.name).toBe('libvirt')
    expect(hypervisorFor('libvirt')).toBe(libvirt)
    expect(hypervisorFor('qemu')).not.toBeInstanceOf(LibvirtHypervisor)
    expect(hypervisorFor('noop')).not.toBeInstanceOf(LibvirtHypervisor)
  })
})

describe('resolveSpec and the libvirt backend', () => {
  it('takes the backend from VMHARNESS_BACKEND', () => {
    expect(resolveSpec({ image: 'tiny' }, { VMHARNESS_BACKEND: 'libvirt' }).backend).toBe('libvirt')
    expect(resolveSpec({ image: 'tiny' }, {}).backend).toBe('auto')
  })

  it("lets a spec's own backend win over the environment", () => {
    expect(resolveSpec({ image: 'tiny', backend: 'qemu' }, { VMHARNESS_BACKEND: 'libvirt' }).backend).toBe('qemu')
    expect(resolveSpec({ image: 'tiny', backend: 'libvirt' }, { VMHARNESS_BACKEND: 'noop' }).backend).toBe('libvirt')
  })

  it("names the variable and the choices, 'libvirt' among them, for an unknown VMHARNESS_BACKEND", () => {
    const error = specErrorOf(() => resolveSpec({ image: 'tiny' }, { VMHARNESS_BACKEND: 'virtualbox' }))
    expect(error.field).toBe('backend (from VMHARNESS_BACKEND)')
    expect(error.message).toContain("'libvirt'")
    expect(error.message).toContain("'qemu'")
    expect(error.message).toContain("got 'virtualbox'")
  })

  it('keeps a libvirtUri as given, and none when there is none', () => {
    const uris = 'qemu+ssh://root@hv1/system, qemu+ssh://root@hv2/system'
    expect(resolveSpec({ image: 'tiny', backend: 'libvirt', libvirtUri: uris }, {}).libvirtUri).toBe(uris)
    expect(resolveSpec({ image: 'tiny' }, {}).libvirtUri).toBeUndefined()
  })

  it.each([[''], ['   '], [42], [null], [['qemu:///system']], ['qemu:///system\nqemu:///session'], ['qemu:///system\0']])('rejects the libvirtUri %j', (libvirtUri) => {
    const error = specErrorOf(() => resolveSpec({ image: 'tiny', backend: 'libvirt', libvirtUri } as never, {}))
    expect(error.field).toBe('libvirtUri')
    expect(error.message).toMatch(/^libvirtUri: must be a libvirt URI such as qemu:\/\/\/system/)
  })
})

describe('LibvirtHypervisor.target', () => {
  const libvirt = new LibvirtHypervisor()

  it('takes the spec\'s libvirtUri over VMHARNESS_LIBVIRT_URI over qemu:///system', () => {
    const env = { VMHARNESS_LIBVIRT_URI: 'qemu+ssh://envuser@envhost:2201/system' }
    expect(libvirt.target({ libvirtUri: 'qemu+unix:///system' }, env)).toEqual({ uri: 'qemu+unix:///system', remote: undefined })
    expect(libvirt.target({ libvirtUri: undefined }, env)).toEqual({
      uri: 'qemu+ssh://envuser@envhost:2201/system',
      remote: { user: 'envuser', host: 'envhost', port: 2201, keyfile: undefined },
    })
    expect(libvirt.target({ libvirtUri: undefined }, {})).toEqual({ uri: 'qemu:///system', remote: undefined })
    // An empty variable counts as unset.
    expect(libvirt.target({ libvirtUri: undefined }, { VMHARNESS_LIBVIRT_URI: '' }).uri).toBe('qemu:///system')
  })

  it("spreads vitest's workers over a comma list", () => {
    const spec = { libvirtUri: 'qemu+ssh://root@hv1/system, qemu+ssh://root@hv2/system,qemu:///system' }
    const hosts = [1, 2, 3, 4, 5].map((id) => libvirt.target(spec, { VITEST_POOL_ID: String(id) }).remote?.host ?? 'local')
    expect(hosts).toEqual(['hv1', 'hv2', 'local', 'hv1', 'hv2'])
    expect(libvirt.target({ libvirtUri: undefined }, { VMHARNESS_LIBVIRT_URI: 'qemu+ssh://a/system,qemu+ssh://b/system', VITEST_POOL_ID: '2' }).remote?.host).toBe('b')
  })

  it('says where a wrong URI came from', () => {
    const fromSpec = specErrorOf(() => libvirt.target({ libvirtUri: 'qemu+tcp://h/system' }, { VMHARNESS_LIBVIRT_URI: 'qemu:///system' }))
    expect(fromSpec.field).toBe('libvirtUri')
    const fromEnv = specErrorOf(() => libvirt.target({ libvirtUri: undefined }, { VMHARNESS_LIBVIRT_URI: 'xen:///system' }))
    expect(fromEnv.field).toBe('libvirtUri (from VMHARNESS_LIBVIRT_URI)')
    expect(fromEnv.message).toContain("'xen:///system' is not a QEMU URI")
  })
})
