import { readdirSync, readFileSync } from 'node:fs'
import { beforeEach, expect, it } from 'vitest'
import type { LibvirtHypervisor } from '../../src/hypervisor/libvirt/libvirt-hypervisor.js'
import { Vm } from '../../src/machine/vm.js'
import { skipBecause } from '../helpers/skip.js'
import { sandbox, sandboxMissing, virsh } from '../helpers/libvirt-sandbox.js'

beforeEach((context) => {
  if (sandboxMissing) skipBecause(context, sandboxMissing)
})

/** The command line of the QEMU process that runs `domain` (the sandbox's PID namespace holds only its own). */
function qemuCommandLine(domain: string): string {
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    const argv = (() => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      } catch {
        return []
      }
    })()
    if (/qemu-system/.test(argv[0] ?? '') && argv.includes(`guest=${domain},debug-threads=on`)) return argv.join(' ')
  }
  throw new Error(`no QEMU process runs domain ${domain}`)
}

it("a domain boots with qboot and its devices on the root bus, its disk uses io_uring (this host allows both), and an internal snapshot loads from it", async () => {
  await using vm = await Vm.start({ image: 'tiny', backend: 'libvirt', libvirtUri: sandbox?.localUri, name: 'extras' })
  const domain = /<name>([^<]+)<\/name>/.exec((vm.hypervisor as LibvirtHypervisor).domainXml(vm.handle))?.[1] as string
  const live = await virsh('dumpxml', domain)
  expect(live).toMatch(/<driver name='qemu' type='qcow2' io='io_uring'\/>\s*<source file='[^']+-disk-0\.qcow2'/)
  expect(live).toContain("<loader type='rom'>/usr/share/qemu/qboot.rom</loader>")
  const argv = qemuCommandLine(domain)
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
