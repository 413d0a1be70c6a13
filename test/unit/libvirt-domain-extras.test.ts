import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { extrasFor, qbootPath } from '../../src/hypervisor/libvirt/domain-extras.js'
import { createDomain } from '../../src/hypervisor/libvirt/domain-create.js'
import type { DomainDefinition } from '../../src/hypervisor/libvirt/domain-xml.js'
import type { LibvirtConnection } from '../../src/hypervisor/libvirt/libvirt-connection.js'
import { LibvirtError } from '../../src/hypervisor/libvirt/libvirt-error.js'

const definition: DomainDefinition = {
  name: 'vmh-run1-ab12',
  uuid: '0b7e2c52-2d5a-4f4e-9a45-3f1d2f6a2b10',
  type: 'qemu',
  machine: 'q35',
  memoryMiB: 256,
  cpus: 1,
  kernel: { path: '/pool/vmh-img-ab-kernel', initrd: undefined, cmdline: 'console=ttyS0' },
  disk: '/pool/vmh-run1-ab12-disk-0.qcow2',
  diskIo: 'io_uring',
  firmware: qbootPath,
  seed: undefined,
  network: 'vmh-run1-ab12',
  mac: '52:54:00:aa:bb:cc',
  consoleLog: '/pool/vmh-run1-ab12-console.log',
  run: 'run1',
}

/** A host whose `virsh create` answers with `refusals` in turn (then succeeds), keeping each domain XML it was given. */
function host(uri: string, refusals: string[]): { connection: LibvirtConnection; created: string[] } {
  const created: string[] = []
  const connection = {
    uri,
    run: async (args: readonly string[]) => {
      if (args[0] !== 'create') throw new Error(`unexpected virsh ${args.join(' ')}`)
      created.push(await readFile(args[1] as string, 'utf8'))
      const refusal = refusals.shift()
      if (refusal) throw new LibvirtError(refusal, args)
      return ''
    },
  } as unknown as LibvirtConnection
  return { connection, created }
}

const diskIoFor = (uri: string) => extrasFor(uri, true).diskIo
const firmwareFor = (uri: string) => extrasFor(uri, true).firmware

describe("a domain's extras: io_uring disk I/O and qboot firmware", () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmharness-disk-io-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('are both asked for on a host that has not refused them; qboot only where the kernel is booted directly', async () => {
    const uri = 'qemu+ssh://root@hv-fine/system'
    expect(extrasFor(uri, true)).toEqual({ diskIo: 'io_uring', firmware: '/usr/share/qemu/qboot.rom' })
    expect(extrasFor(uri, false)).toEqual({ diskIo: 'io_uring', firmware: undefined })
    const { connection, created } = host(uri, [])
    await createDomain({ connection, dir, definition: { ...definition } })
    expect(created).toHaveLength(1)
    expect(created[0]).toContain("<driver name='qemu' type='qcow2' io='io_uring'/>")
    expect(created[0]).toContain("<loader type='rom'>/usr/share/qemu/qboot.rom</loader>")
  })

  it("falls back to QEMU's thread pool once libvirt refuses io_uring, for that host only", async () => {
    const uri = 'qemu+ssh://root@hv-old/system'
    const { connection, created } = host(uri, ['unsupported configuration: io uring is not supported by this QEMU binary'])
    const record = { connection, dir, definition: { ...definition } }
    await createDomain(record)
    expect(created).toHaveLength(2)
    expect(created[0]).toContain("io='io_uring'")
    expect(created[1]).toContain("<driver name='qemu' type='qcow2'/>")
    expect(created[1]).toContain('qboot.rom')
    expect(record.definition.diskIo).toBeUndefined()
    expect(diskIoFor(uri)).toBeUndefined()
    expect(firmwareFor(uri)).toBe(qbootPath)
    expect(diskIoFor('qemu+ssh://root@hv-other/system')).toBe('io_uring')
  })

  it('falls back when QEMU itself cannot set io_uring up (a seccomp profile, say)', async () => {
    const uri = 'qemu+ssh://root@hv-locked/system'
    const { connection, created } = host(uri, [
      "internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: -blockdev {...}: Unable to use io_uring: failed to init linux io_uring ring: Operation not permitted",
    ])
    await createDomain({ connection, dir, definition: { ...definition } })
    expect(created).toHaveLength(2)
    expect(diskIoFor(uri)).toBeUndefined()
  })

  it("falls back to the machine's own firmware where the host has no qboot (libvirt's refusal names the path)", async () => {
    const uri = 'qemu+ssh://root@hv-fedora/system'
    const { connection, created } = host(uri, [`Path '${qbootPath}' is not accessible: No such file or directory`])
    const record = { connection, dir, definition: { ...definition } }
    await createDomain(record)
    expect(created).toHaveLength(2)
    expect(created[1]).not.toContain('<loader')
    expect(created[1]).toContain("io='io_uring'")
    expect(firmwareFor(uri)).toBeUndefined()
    expect(diskIoFor(uri)).toBe('io_uring')
  })

  it('drops each refused extra in turn on a host that refuses both', async () => {
    const uri = 'qemu+ssh://root@hv-bare/system'
    const { connection, created } = host(uri, [`Path '${qbootPath}' is not accessible: No such file or directory`, 'unsupported configuration: io uring is not supported by this QEMU binary'])
    await createDomain({ connection, dir, definition: { ...definition } })
    expect(created).toHaveLength(3)
    expect(created[2]).not.toContain('<loader')
    expect(created[2]).not.toContain('io_uring')
    expect(extrasFor(uri, true)).toEqual({ diskIo: undefined, firmware: undefined })
  })

  it("are kept when QEMU fails on the disk for another reason, though its message quotes the disk's aio setting", async () => {
    const uri = 'qemu+ssh://root@hv-locked-disk/system'
    const { connection, created } = host(uri, [
      'internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: -blockdev {"driver":"file","filename":"/pool/x.qcow2","aio":"io_uring","node-name":"libvirt-2-storage"}: Failed to get "write" lock',
    ])
    const error = await createDomain({ connection, dir, definition: { ...definition } }).catch((e: unknown) => e)
    expect((error as Error).message).toContain('Failed to get "write" lock')
    expect(created).toHaveLength(1)
    expect(extrasFor(uri, true)).toEqual({ diskIo: 'io_uring', firmware: qbootPath })
  })

  it('are kept, and the error passed on, when a start fails for another reason', async () => {
    const uri = 'qemu+ssh://root@hv-busy/system'
    const { connection, created } = host(uri, ["operation failed: domain 'vmh-run1-ab12' already exists with uuid 0b7e2c52"])
    const error = await createDomain({ connection, dir, definition: { ...definition } }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(LibvirtError)
    expect((error as Error).message).toContain('already exists')
    expect(created).toHaveLength(1)
    expect(extrasFor(uri, true)).toEqual({ diskIo: 'io_uring', firmware: qbootPath })
  })
})
