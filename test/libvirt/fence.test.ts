import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest'
import { Vm } from '../../src/machine/vm.js'
import { skipBecause } from '../helpers/skip.js'
import { domainOf, sandbox, sandboxMissing, virsh } from '../helpers/libvirt-sandbox.js'
import { runDir } from '../../src/host/run-dir.js'

let vm: Vm | undefined
let server: Server | undefined
let port = 0

beforeEach((context) => {
  if (sandboxMissing) skipBecause(context, sandboxMissing)
})

beforeAll(async () => {
  if (sandboxMissing) return
  // A service of the hypervisor host on all its addresses, as many hosts run one: the sandbox's
  // network namespace is the host here, with the VM's bridge among its addresses.
  server = createServer((socket) => socket.end('secret-from-the-hypervisor-host\n'))
  server.listen(0, '0.0.0.0')
  await once(server, 'listening')
  port = (server.address() as AddressInfo).port
  vm = await Vm.start({ image: 'tiny', backend: 'libvirt', libvirtUri: sandbox?.localUri, name: 'fenced' })
})

afterAll(async () => {
  await vm?.destroy()
  await unfenced?.destroy()
  server?.close()
})

/** What the guest reads from the host's service through its bridge's address (the first of its /28). */
async function readThroughBridge(guest: Vm): Promise<string> {
  const address = await guest.hypervisor.guestIp(guest.handle)
  const [a, b, c, d] = address.split('.').map(Number) as [number, number, number, number]
  return (await guest.exec(`nc -w 3 ${a}.${b}.${c}.${d - 1} ${port} </dev/null; echo "exit $?"`)).stdout
}

/** The NIC of a domain as libvirt runs it now. */
async function liveNic(guest: Vm): Promise<string> {
  return /<interface[\s\S]*?<\/interface>/.exec(await virsh('dumpxml', domainOf(guest)))?.[0] ?? ''
}

let unfenced: Vm | undefined
let unfencedSnapshot = ''

it('VMHARNESS_LIBVIRT_FENCE=off leaves the fence out: that guest reads the host service (what the fence stops)', async () => {
  process.env.VMHARNESS_LIBVIRT_FENCE = 'off'
  try {
    // Kept until the end: a clone below starts from its snapshot, which goes with it.
    const open = (unfenced = await Vm.start({ image: 'tiny', backend: 'libvirt', libvirtUri: sandbox?.localUri, name: 'unfenced' }))
    expect(await liveNic(open)).not.toContain('filterref')
    expect(await readThroughBridge(open)).toContain('secret-from-the-hypervisor-host')
    unfencedSnapshot = (await open.snapshot('unfenced', { kind: 'external' })).path as string
  } finally {
    delete process.env.VMHARNESS_LIBVIRT_FENCE
  }
})

it("a guest reaches nothing of the hypervisor host's through its network's bridge but DHCP; the host's SSH to it still works", async () => {
  const guest = vm as Vm
  expect(await guest.hypervisor.guestIp(guest.handle)).toMatch(/^10\.213\.\d+\.\d+$/)
  const fetched = await readThroughBridge(guest)
  expect(fetched).not.toContain('secret-from-the-hypervisor-host')
  expect(fetched).toMatch(/exit [1-9]/)
  // SSH from the host still answers through the fence.
  expect(await guest.succeed('echo still here')).toBe('still here\n')
})

it('the fence goes on while the guest boots: the domain starts with its link down and no filter, and runs with the filter and its link up', async () => {
  const guest = vm as Vm
  const created = await readFile(join((await runDir()).path, `vm-${guest.handle.id}`, 'domain.xml'), 'utf8')
  const createdNic = /<interface[\s\S]*?<\/interface>/.exec(created)?.[0] ?? ''
  expect(createdNic).toContain("<link state='down'/>")
  expect(createdNic).not.toContain('filterref')
  const live = await liveNic(guest)
  expect(live).toMatch(/<filterref filter=["']vmharness-fence["']\/>/)
  expect(live).toMatch(/<link state=["']up["']\/>/)
})

it('a clone is fenced: of a fenced guest, and of a guest saved unfenced when this run fences its guests', async () => {
  const fencedSnapshot = (await (vm as Vm).snapshot('fenced', { kind: 'external' })).path as string
  for (const from of [fencedSnapshot, unfencedSnapshot]) {
    await using clone = await Vm.start({ restoreFrom: from, name: 'fenced-clone' })
    expect(await liveNic(clone)).toMatch(/<filterref filter=["']vmharness-fence["']\/>/)
    const fetched = await readThroughBridge(clone)
    expect(fetched).not.toContain('secret-from-the-hypervisor-host')
    expect(fetched).toMatch(/exit [1-9]/)
  }
})
