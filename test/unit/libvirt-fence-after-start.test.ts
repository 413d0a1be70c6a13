import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HypervisorError } from '../../src/errors.js'
import type { DomainDefinition } from '../../src/hypervisor/libvirt/domain-xml.js'
import { fenceStartedDomain, fencesAfterStart } from '../../src/hypervisor/libvirt/fence-after-start.js'
import { withFence } from '../../src/hypervisor/libvirt/guest-fence.js'
import type { LibvirtConnection } from '../../src/hypervisor/libvirt/libvirt-connection.js'
import { LibvirtError } from '../../src/hypervisor/libvirt/libvirt-error.js'

const definition: DomainDefinition = {
  name: 'vmh-run1-cd34',
  uuid: '6c1d0f3e-8a8b-4b0e-bb0d-4a1b5d9e7c21',
  type: 'qemu',
  machine: 'q35',
  memoryMiB: 256,
  cpus: 1,
  disk: '/pool/vmh-run1-cd34-disk-0.qcow2',
  seed: undefined,
  network: 'vmh-run1-cd34',
  mac: '52:54:00:cd:34:01',
  consoleLog: '/pool/vmh-run1-cd34-console.log',
  run: 'run1',
}

/** A host that records each virsh command (and the interface XML it was given), refusing `refuse` once. */
function host(refuse?: string): { connection: LibvirtConnection; commands: string[]; updates: string[] } {
  const commands: string[] = []
  const updates: string[] = []
  const connection = {
    uri: 'qemu:///system',
    run: async (args: readonly string[]) => {
      commands.push(args.join(' '))
      if (args[0] === 'update-device') updates.push(await readFile(args[2] as string, 'utf8'))
      if (args[0] === refuse) throw new LibvirtError("Requested operation is not valid: referenced filter 'vmharness-fence' is missing", args)
      return ''
    },
    tryRun: async (args: readonly string[]) => {
      commands.push(args.join(' '))
      return ''
    },
  } as unknown as LibvirtConnection
  return { connection, commands, updates }
}

describe('the fence put on after the start', () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmharness-fence-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('puts the filter on first, with the link still down, and then brings the link up', async () => {
    const { connection, commands, updates } = host()
    await fenceStartedDomain({ connection, dir, definition }, 'web')
    expect(commands.map((command) => command.replace(dir, 'DIR'))).toEqual(['update-device vmh-run1-cd34 DIR/fenced-interface.xml --live', 'domif-setlink vmh-run1-cd34 52:54:00:cd:34:01 up'])
    expect(updates[0]).toContain("<filterref filter='vmharness-fence'/><link state='down'/>")
  })

  it("stops the domain, its link never up, when the filter cannot go on; the stop is the harness's, and the error says so", async () => {
    const { connection, commands } = host('update-device')
    const record: { connection: LibvirtConnection; dir: string; definition: DomainDefinition; stopping?: string } = { connection, dir, definition }
    const error = await fenceStartedDomain(record as never, 'web').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(HypervisorError)
    expect((error as Error).message).toMatch(/could not fence the guest off the hypervisor host, so it was stopped with its network still down: .*referenced filter 'vmharness-fence' is missing/)
    expect(commands.map((command) => command.split(' ')[0])).toEqual(['update-device', 'destroy'])
    expect(record.stopping).toBe('sigkill')
  })

  it('stops the domain when the link cannot come up after the filter went on', async () => {
    const { connection, commands } = host('domif-setlink')
    const error = await fenceStartedDomain({ connection, dir, definition }, 'web').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(HypervisorError)
    expect(commands.map((command) => command.split(' ')[0])).toEqual(['update-device', 'domif-setlink', 'destroy'])
  })

  it('is for fenced TCG domains only: under KVM vhost-net carries the frames past QEMU, so the fence goes on before the guest runs', () => {
    expect(fencesAfterStart(definition)).toBe(true)
    expect(fencesAfterStart({ ...definition, fenced: undefined })).toBe(true)
    expect(fencesAfterStart({ ...definition, type: 'kvm' })).toBe(false)
    expect(fencesAfterStart({ ...definition, fenced: false })).toBe(false)
  })
})

describe('a clone of a guest saved unfenced', () => {
  const saved = "<domain type='qemu'>\n  <devices>\n    <interface type='network'>\n      <mac address='52:54:00:cd:34:01'/>\n      <link state='up'/>\n    </interface>\n  </devices>\n</domain>\n"

  it('gets the fence on its one NIC', () => {
    expect(withFence(saved)).toContain("<link state='up'/>\n    <filterref filter='vmharness-fence'/></interface>")
  })

  it('is refused when the saved XML does not have exactly one NIC', () => {
    expect(() => withFence(saved.replace('</devices>', "<interface type='network'></interface></devices>"))).toThrow(/has 2 network interfaces/)
    expect(() => withFence("<domain type='qemu'><devices/></domain>")).toThrow(/has 0 network interfaces/)
  })
})
