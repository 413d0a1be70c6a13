import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest'
import { cacheRoot } from '../../src/host/cache-dir.js'
import { debianImageKey } from '../../src/images/debian-image.js'
import { Vm } from '../../src/machine/vm.js'
import { skipBecause } from '../helpers/skip.js'
import { sandbox, sandboxMissing } from '../helpers/libvirt-sandbox.js'

// The sandbox has no network to build the Debian image in; npm test builds it first, in the
// integration project (test/integration/debian.test.ts).
const imageMissing = await access(join(cacheRoot(), 'images', `debian-${await debianImageKey()}`, 'manifest.json')).then(
  () => undefined,
  () => 'needs the Debian image in the cache, and the sandbox cannot reach the mirror to build it: npm test builds it first (test/integration/debian.test.ts)',
)

let original: Vm | undefined

beforeEach((context) => {
  const missing = sandboxMissing ?? imageMissing
  if (missing) skipBecause(context, missing)
})

beforeAll(async () => {
  if (sandboxMissing || imageMissing) return
  original = await Vm.start({ image: 'debian', backend: 'libvirt', libvirtUri: sandbox?.localUri, name: 'debian-original' })
})

afterAll(async () => {
  await original?.destroy()
})

/** The IPv4 addresses the guest itself has on its NIC. */
async function guestAddresses(vm: Vm): Promise<string[]> {
  return (await vm.succeed("ip -4 -o addr show dev eth0 | awk '{print $4}'")).trim().split('\n')
}

it('a Debian clone beside its original leases an address of its own network (networkd asks again when its carrier comes back)', async () => {
  const vm = original as Vm
  const saved = await vm.snapshot('debian-clone', { kind: 'external' })
  const originalIp = await vm.hypervisor.guestIp(vm.handle)
  expect(await guestAddresses(vm)).toEqual([expect.stringMatching(new RegExp(`^${originalIp.replaceAll('.', '\\.')}/`))])

  // No backend named: a clone is started by the backend (and on the host) that saved it.
  await using clone = await Vm.start({ restoreFrom: saved.path })
  const cloneIp = await clone.hypervisor.guestIp(clone.handle)
  expect(cloneIp).not.toBe(originalIp)
  // The saved state held the original's address; the clone now has its own lease's, and only that.
  expect(await guestAddresses(clone)).toEqual([expect.stringMatching(new RegExp(`^${cloneIp.replaceAll('.', '\\.')}/`))])
  await clone.succeed('echo clone > /root/which')
  await vm.succeed('echo original > /root/which')
  expect(await clone.succeed('cat /root/which')).toBe('clone\n')
  expect(await vm.succeed('cat /root/which')).toBe('original\n')
})
