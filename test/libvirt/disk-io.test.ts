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

it("a domain's disk uses io_uring where the host's QEMU allows it (this one does), and an internal snapshot loads from it", async () => {
  await using vm = await Vm.start({ image: 'tiny', backend: 'libvirt', libvirtUri: sandbox?.localUri, name: 'io-uring' })
  const domain = /<name>([^<]+)<\/name>/.exec((vm.hypervisor as LibvirtHypervisor).domainXml(vm.handle))?.[1] as string
  expect(await virsh('dumpxml', domain)).toMatch(/<driver name='qemu' type='qcow2' io='io_uring'\/>\s*<source file='[^']+-disk-0\.qcow2'/)
  expect(qemuCommandLine(domain)).toMatch(/"aio":"io_uring"/)
  await vm.snapshot('clean', { kind: 'internal' })
  await vm.succeed('echo dirty > /root/dirty')
  await vm.restore('clean')
  await vm.fail('test -e /root/dirty')
})
