import { describe, expect, it } from 'vitest'
import { SpecError, isVmHarnessError } from '../../src/errors.js'
import { parseLibvirtUri, parseLibvirtUris, pickForWorker } from '../../src/hypervisor/libvirt/libvirt-uri.js'

/** The SpecError a call throws (failing the test when it throws nothing or something else). */
function specErrorOf(attempt: () => unknown): SpecError {
  try {
    attempt()
  } catch (error) {
    expect(error).toBeInstanceOf(SpecError)
    expect(isVmHarnessError(error)).toBe(true)
    return error as SpecError
  }
  throw new Error('expected a SpecError, but nothing was thrown')
}

describe('parseLibvirtUri', () => {
  it.each(['qemu:///system', 'qemu+unix:///system'])('takes the local URI %s as a daemon on this machine', (uri) => {
    expect(parseLibvirtUri(uri, 'libvirtUri')).toEqual({ uri, remote: undefined })
  })

  it('reads user, host, port and keyfile from a qemu+ssh URI', () => {
    const uri = 'qemu+ssh://tester@hv1.example.org:2222/system?keyfile=/k'
    expect(parseLibvirtUri(uri, 'libvirtUri')).toEqual({
      uri,
      remote: { user: 'tester', host: 'hv1.example.org', port: 2222, keyfile: '/k' },
    })
  })

  it('refuses a session daemon, saying the backend needs the system one', () => {
    expect(specErrorOf(() => parseLibvirtUri('qemu:///session', 'libvirtUri')).message).toContain('needs the system daemon')
  })

  it('logs in as root on port 22 without a keyfile when the URI names none', () => {
    expect(parseLibvirtUri('qemu+ssh://hv2/system', 'libvirtUri').remote).toEqual({ user: 'root', host: 'hv2', port: 22, keyfile: undefined })
  })

  it('decodes a percent-encoded keyfile and user', () => {
    const remote = parseLibvirtUri('qemu+ssh://us%40er@h/system?keyfile=/keys/my%20key', 'libvirtUri').remote
    expect(remote?.user).toBe('us@er')
    expect(remote?.keyfile).toBe('/keys/my key')
  })

  it('strips the brackets from an IPv6 host', () => {
    expect(parseLibvirtUri('qemu+ssh://admin@[fd00::1]:2200/system', 'libvirtUri').remote).toEqual({ user: 'admin', host: 'fd00::1', port: 2200, keyfile: undefined })
    expect(parseLibvirtUri('qemu+ssh://[::1]/system', 'libvirtUri').remote?.host).toBe('::1')
  })

  it('refuses what is not a URI, naming the value and the field', () => {
    const error = specErrorOf(() => parseLibvirtUri('hv1.example.org', 'libvirtUri'))
    expect(error.field).toBe('libvirtUri')
    expect(error.message).toMatch(/^libvirtUri: 'hv1\.example\.org' is not a URI/)
    expect(error.message).toContain('qemu:///system')
  })

  it.each(['xen:///system', 'lxc:///system', 'test:///default', 'qemu-ssh://h/system'])("refuses the non-QEMU driver of '%s'", (uri) => {
    const error = specErrorOf(() => parseLibvirtUri(uri, 'libvirtUri'))
    expect(error.message).toContain(`'${uri}' is not a QEMU URI`)
  })

  it.each(['qemu+tcp://h/system', 'qemu+tls://h/system', 'qemu://h/system', 'qemu+libssh2://u@h/system'])('refuses a remote URI over another transport than ssh: %s', (uri) => {
    const error = specErrorOf(() => parseLibvirtUri(uri, 'libvirtUri'))
    expect(error.message).toContain(uri)
    expect(error.message).toMatch(/over SSH only/)
  })

  it('refuses a transport without a host', () => {
    expect(specErrorOf(() => parseLibvirtUri('qemu+ssh:///system', 'libvirtUri')).message).toMatch(/names a transport \(ssh\) but no host/)
  })

  it.each(['qemu:///embed', 'qemu:///', 'qemu:///system/', 'qemu+ssh://h/', 'qemu+ssh://h/root'])('refuses the path of %s', (uri) => {
    expect(specErrorOf(() => parseLibvirtUri(uri, 'libvirtUri')).message).toContain(`'${uri}' does not name the system daemon (…/system)`)
  })
})

describe('parseLibvirtUris', () => {
  it('reads a comma list, trimming spaces and dropping empty parts', () => {
    const targets = parseLibvirtUris(' qemu:///system ,qemu+ssh://a@h1/system,  qemu+ssh://h2:2022/system?keyfile=/id ,', 'libvirtUri')
    expect(targets.map((t) => t.uri)).toEqual(['qemu:///system', 'qemu+ssh://a@h1/system', 'qemu+ssh://h2:2022/system?keyfile=/id'])
    expect(targets.map((t) => t.remote && `${t.remote.user}@${t.remote.host}:${t.remote.port}`)).toEqual([undefined, 'a@h1:22', 'root@h2:2022'])
    expect(targets[2]?.remote?.keyfile).toBe('/id')
  })

  it('takes a single URI as a list of one', () => {
    expect(parseLibvirtUris('qemu:///system', 'libvirtUri')).toEqual([{ uri: 'qemu:///system', remote: undefined }])
  })

  it.each(['', '   ', ',', ' , ,'])('refuses a list that names no URI: %j', (value) => {
    const error = specErrorOf(() => parseLibvirtUris(value, 'libvirtUri (from VMHARNESS_LIBVIRT_URI)'))
    expect(error.field).toBe('libvirtUri (from VMHARNESS_LIBVIRT_URI)')
    expect(error.message).toMatch(/names no libvirt URI/)
  })

  it('refuses the whole list when one of its URIs is wrong, naming that one', () => {
    expect(specErrorOf(() => parseLibvirtUris('qemu:///system, qemu+tcp://h/system', 'libvirtUri')).message).toContain("'qemu+tcp://h/system'")
  })
})

describe('pickForWorker', () => {
  const hosts = ['h0', 'h1', 'h2']

  it('gives vitest worker i the host (i-1) mod N', () => {
    const picked = [1, 2, 3, 4, 5, 6, 7].map((id) => pickForWorker(hosts, { VITEST_POOL_ID: String(id) }))
    expect(picked).toEqual(['h0', 'h1', 'h2', 'h0', 'h1', 'h2', 'h0'])
  })

  it('falls back to VITEST_WORKER_ID when there is no pool id', () => {
    expect(pickForWorker(hosts, { VITEST_WORKER_ID: '2' })).toBe('h1')
    expect(pickForWorker(hosts, { VITEST_POOL_ID: '3', VITEST_WORKER_ID: '2' })).toBe('h2')
  })

  it('gives the first host outside vitest or for an id it cannot read', () => {
    expect(pickForWorker(hosts, {})).toBe('h0')
    expect(pickForWorker(hosts, { VITEST_POOL_ID: 'x' })).toBe('h0')
    expect(pickForWorker(hosts, { VITEST_POOL_ID: '0' })).toBe('h0')
    expect(pickForWorker(hosts, { VITEST_POOL_ID: '-2' })).toBe('h0')
  })

  it('always gives the only host of a list of one', () => {
    for (const id of ['1', '2', '9']) expect(pickForWorker(['only'], { VITEST_POOL_ID: id })).toBe('only')
  })
})
