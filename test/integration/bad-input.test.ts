import { readdir } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { HostError, ImageError, SnapshotError, SpecError, type VmHarnessError } from '../../src/errors.js'
import { acceleratorVerdict } from '../../src/host/accelerator.js'
import { findGuestKernel } from '../../src/host/guest-kernel.js'
import { findBinary } from '../../src/host/find-binary.js'
import { runDir } from '../../src/host/run-dir.js'
import { QemuHypervisor } from '../../src/hypervisor/qemu/qemu-hypervisor.js'
import { Vm } from '../../src/machine/vm.js'
import type { VmSpec } from '../../src/spec/vm-spec.js'
import { qemuProcessesMentioning } from '../helpers/host-state.js'
import { skipBecause } from '../helpers/skip.js'

type ErrorClass = new (...args: never[]) => VmHarnessError

const saved = { ...process.env }
afterEach(() => {
  for (const name of ['VMHARNESS_QEMU', 'VMHARNESS_SEED_ISO_TOOL']) {
    if (saved[name] === undefined) delete process.env[name]
    else process.env[name] = saved[name]
  }
})

/** Starts a VM that must fail with `kind` matching `message`, and checks nothing was started or left. */
async function expectRefused(spec: VmSpec, kind: ErrorClass, message: RegExp, env: Record<string, string> = {}): Promise<void> {
  Object.assign(process.env, env)
  const run = (await runDir()).path
  const before = await readdir(run)
  const started = Date.now()
  // A fresh backend each time: it looks its tools up once.
  const error = await Vm.start(spec, { hypervisor: new QemuHypervisor(), onProgress: () => undefined }).then(
    async (vm) => (await vm.destroy(), undefined),
    (e: unknown) => e,
  )
  const ms = Date.now() - started
  expect(error).toBeInstanceOf(kind)
  expect((error as Error).message).toMatch(message)
  expect(await readdir(run)).toEqual(before)
  expect(await qemuProcessesMentioning(run)).toEqual([])
  process.stdout.write(`[bad input] ${(error as Error).constructor.name} after ${ms} ms: ${(error as Error).message.split('\n').join(' | ')}\n`)
}

describe('bad input is a typed error that names the fix, before anything starts', () => {
  it.each<[string, VmSpec, ErrorClass, RegExp]>([
    ['a missing image file', { image: { disk: '/nonexistent/disk.qcow2', kernel: '/nonexistent/vmlinuz' } }, ImageError, /file \/nonexistent\/\S+ does not exist or cannot be read/],
    ['an unknown image name', { image: 'ubuntu' }, ImageError, /unknown image; use one of 'tiny', 'debian', or give your own files/],
    ['a package name apt would misread', { image: { name: 'debian', packages: ['--allow-unauthenticated'] } }, ImageError, /is not a Debian package name/],
    ['memory 0', { image: 'tiny', memory: 0 }, SpecError, /^memory: must be a whole number of MiB from 64/],
    ['more memory than the host has', { image: 'tiny', memory: 1024 * 1024 }, SpecError, /^memory: 1048576 MiB is more than this host has/],
    ['0 vCPUs', { image: 'tiny', cpus: 0 }, SpecError, /^cpus: must be a whole number of vCPUs from 1/],
    ['an unknown backend', { image: 'tiny', backend: 'hyperv' as never }, SpecError, /^backend: must be one of 'qemu', 'libvirt', 'noop', 'auto', got 'hyperv'/],
    ['a disk without a kernel on microvm', { image: { disk: '/x.qcow2' }, machine: 'microvm' }, SpecError, /^machine: 'microvm' boots only a kernel/],
    ['a snapshot directory that is not one', { restoreFrom: '/nonexistent/snapshot' }, SnapshotError, /is not a complete saved state .*save it again/],
  ])('%s', async (_case, spec, kind, message) => {
    await expectRefused(spec, kind, message)
  })

  it('a missing QEMU names its package (or the variable that points elsewhere)', async () => {
    await expectRefused({ image: 'tiny' }, HostError, /VMHARNESS_QEMU=\/nonexistent\/qemu is not an executable file; it should point at qemu-system-x86_64.*fix: point VMHARNESS_QEMU at an executable/s, { VMHARNESS_QEMU: '/nonexistent/qemu' })
  })

  it('a missing seed-ISO tool names the packages', async () => {
    await expectRefused({ image: 'tiny' }, HostError, /VMHARNESS_SEED_ISO_TOOL=.* is not an executable file/, { VMHARNESS_SEED_ISO_TOOL: '/nonexistent/genisoimage' })
  })

  it('KVM forced on a host where the probe fails is a HostError, never a hang', async (context) => {
    const verdict = await acceleratorVerdict({ qemu: (await findBinary('qemu-system-x86_64')) ?? '', kernel: await findGuestKernel() })
    if (verdict.accel === 'kvm') skipBecause(context, 'KVM works on this host, so forcing it is not an error here')
    await expectRefused({ image: 'tiny', accel: 'kvm' }, HostError, /KVM was asked for \(accel: 'kvm'\), but it does not work on this host.*fix: use accel: 'auto' or 'tcg'/s)
  })
})

describe('nothing from a name or path reaches a shell', () => {
  it('starts and runs a VM whose name is shell and QEMU syntax', async () => {
    const name = `a "b" 'c' $(touch /tmp/vmharness-pwned) \`id\`, d=e`
    await using vm = await Vm.start({ image: 'tiny', name })
    expect(vm.name).toBe(name)
    expect(await vm.succeed('echo ok')).toBe('ok\n')
    await expect(readdir('/tmp').then((entries) => entries.includes('vmharness-pwned'))).resolves.toBe(false)
  })
})
