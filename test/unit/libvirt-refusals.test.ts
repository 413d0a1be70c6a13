import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { HostError, UnsupportedError } from '../../src/errors.js'
import { HostJump } from '../../src/hypervisor/libvirt/host-jump.js'
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/libvirt-hypervisor.js'
import { resolveSpec } from '../../src/spec/vm-spec.js'

describe('the libvirt backend refuses, before it reaches any host', () => {
  const libvirt = new LibvirtHypervisor()

  it('outsideAccess, with an UnsupportedError naming it', async () => {
    const error = await libvirt.prepare(resolveSpec({ image: 'tiny', outsideAccess: true })).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UnsupportedError)
    expect((error as Error).message).toBe('the libvirt backend does not support outsideAccess')
  })

  it('networks between machines, with an UnsupportedError that points at the qemu backend', async () => {
    const spec = { ...resolveSpec({ image: 'tiny' }), networks: [{ network: 'lan' }] as never }
    const error = await libvirt.prepare(spec).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UnsupportedError)
    expect((error as Error).message).toMatch(/does not support networks between machines .*use the qemu backend/)
  })
})

describe('a remote hypervisor host whose key is not pinned', () => {
  let dir = ''
  const saved = process.env.VMHARNESS_LIBVIRT_KNOWN_HOSTS

  afterAll(async () => {
    if (saved === undefined) delete process.env.VMHARNESS_LIBVIRT_KNOWN_HOSTS
    else process.env.VMHARNESS_LIBVIRT_KNOWN_HOSTS = saved
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('is refused with a HostError before any connection, saying how to pin it', async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmharness-known-hosts-'))
    const knownHosts = join(dir, 'known_hosts')
    await writeFile(knownHosts, '[127.0.0.1]:2200 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n')
    process.env.VMHARNESS_LIBVIRT_KNOWN_HOSTS = knownHosts
    const jump = new HostJump({ user: 'root', host: '127.0.0.1', port: 2222, keyfile: undefined })
    const error = await jump.forward('10.213.0.2', 22).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(HostError)
    expect((error as Error).message).toContain(`the SSH host key of the libvirt host [127.0.0.1]:2222 is not in ${knownHosts}`)
    expect((error as HostError).fix).toContain('ssh-keyscan -p 2222 127.0.0.1')
  })
})
