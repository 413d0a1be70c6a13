import { beforeEach, expect, it } from 'vitest'
import { Vm } from '../../src/machine/vm.js'
import { skipBecause } from '../helpers/skip.js'
import { qemuCommandLinesMentioning } from '../helpers/host-state.js'
import { domainOf, sandbox, sandboxMissing, virsh } from '../helpers/libvirt-sandbox.js'

beforeEach((context) => {
  if (sandboxMissing) skipBecause(context, sandboxMissing)
})

it("a domain boots with qboot and its devices on the root bus, its disk uses io_uring (this host allows both), and an internal snapshot loads from it", async () => {
  await using vm = await Vm.start({ image: 'tiny', backend: 'libvirt', libvirtUri: sandbox?.localUri, name: 'extras' })
  const domain = domainOf(vm)
  const live = await virsh('dumpxml', domain)
  expect(live).toMatch(/<driver name='qemu' type='qcow2' io='io_uring'\/>\s*<source file='[^']+-disk-0\.qcow2'/)
  expect(live).toContain("<loader type='rom'>/usr/share/qemu/qboot.rom</loader>")
  const [qemu] = await qemuCommandLinesMentioning(`guest=${domain},`)
  const argv = (qemu?.argv ?? []).join(' ')
  expect(argv).toMatch(/"aio":"io_uring"/)
  expect(argv).toContain('-bios /usr/share/qemu/qboot.rom')
  expect(argv).not.toContain('pcie-root-port')
  // The guest sees its four virtio devices in slots 2 to 5 of bus 0, and no PCI bridge.
  const devices = (await vm.succeed("for d in /sys/bus/pci/devices/*; do echo \"${d##*/} $(cat $d/vendor) $(cat $d/class)\"; done")).trim().split('\n')
  expect(devices.filter((line) => line.includes(' 0x1af4 ')).map((line) => line.split(' ')[0])).toEqual(['0000:00:02.0', '0000:00:03.0', '0000:00:04.0', '0000:00:05.0'])
  expect(devices.filter((line) => / 0x0604/.test(line))).toEqual([])
  await vm.snapshot('clean', { kind: 'internal' })
  await vm.succeed('echo dirty > /root/dirty')
  await vm.restore('clean')
  await vm.fail('test -e /root/dirty')
  // ACPI works under qboot: the guest powers off when asked, without being forced.
  await vm.stop(60_000)
  expect((await vm.handle.exited).stopMethod).toBe('powerdown')
})
