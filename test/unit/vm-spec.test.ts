import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SpecError, isVmHarnessError } from '../../src/errors.js'
import { resolveSpec } from '../../src/spec/vm-spec.js'

describe('resolveSpec', () => {
  it('fills in defaults', () => {
    const spec = resolveSpec({ image: 'tiny' }, {})
    expect(spec).toMatchObject({ name: 'tiny', memory: 256, cpus: 1, accel: 'auto', machine: 'microvm', cpuModel: 'default', backend: 'auto', kernelArgs: [] })
  })

  it.each([
    [{ image: 'tiny', memory: 0 }, 'memory'],
    [{ image: 'tiny', memory: 12.5 }, 'memory'],
    [{ image: 'tiny', cpus: 0 }, 'cpus'],
    [{ image: 'tiny', backend: 'vmware' }, 'backend'],
    [{ image: 'tiny', accel: 'hvf' }, 'accel'],
    [{ image: 'tiny', machine: 'q35' }, 'machine'],
    [{ image: 'tiny', cpuModel: 'host' }, 'cpuModel'],
    [{ image: '' }, 'image'],
    [{}, 'image'],
    [{ image: 'tiny', name: '' }, 'name'],
    [{ image: 'tiny', kernelArgs: 'quiet' }, 'kernelArgs'],
    [{ image: { kernel: '/vmlinuz' } }, 'image'],
  ])('rejects %j naming the field %s', (spec, field) => {
    const attempt = () => resolveSpec(spec as never, {})
    expect(attempt).toThrow(SpecError)
    try {
      attempt()
    } catch (error) {
      expect(isVmHarnessError(error)).toBe(true)
      expect((error as SpecError).field).toBe(field)
      expect((error as Error).message).toMatch(new RegExp(`^${field}: `))
    }
  })

  it('takes the backend and accelerator from the environment, and names the variable when it is wrong', () => {
    expect(resolveSpec({ image: 'tiny' }, { VMHARNESS_BACKEND: 'noop', VMHARNESS_ACCEL: 'tcg' })).toMatchObject({ backend: 'noop', accel: 'tcg' })
    expect(() => resolveSpec({ image: 'tiny' }, { VMHARNESS_BACKEND: 'xen' })).toThrow(/VMHARNESS_BACKEND.*'xen'/)
  })

  it('accepts any characters in a name, since names never reach a shell', () => {
    expect(resolveSpec({ image: 'tiny', name: `it's "$(rm -rf /)" ok` }, {}).name).toBe(`it's "$(rm -rf /)" ok`)
  })
})

describe('a clone (restoreFrom)', () => {
  it('takes memory, cpus and machine from the saved state unless given, and falls back when it is unreadable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmharness-spec-'))
    try {
      await writeFile(join(dir, 'snapshot.json'), JSON.stringify({ launch: { memoryMiB: 512, cpus: 2, machine: 'pc' } }))
      expect(resolveSpec({ restoreFrom: dir }, {})).toMatchObject({ memory: 512, cpus: 2, machine: 'pc' })
      expect(resolveSpec({ restoreFrom: dir, memory: 1024 }, {})).toMatchObject({ memory: 1024, cpus: 2 })
      expect(resolveSpec({ restoreFrom: join(dir, 'missing') }, {})).toMatchObject({ memory: 256, cpus: 1, machine: 'microvm' })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('is started by the backend that saved it (and a libvirt one on its host), whatever VMHARNESS_BACKEND says; another backend asked for is refused', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmharness-spec-'))
    const launch = { memoryMiB: 256, cpus: 1, machine: 'pc' }
    try {
      await writeFile(join(dir, 'snapshot.json'), JSON.stringify({ backend: 'libvirt', uri: 'qemu+ssh://ci@hv1/system', launch }))
      expect(resolveSpec({ restoreFrom: dir }, { VMHARNESS_BACKEND: 'qemu' })).toMatchObject({ backend: 'libvirt', libvirtUri: 'qemu+ssh://ci@hv1/system' })
      expect(resolveSpec({ restoreFrom: dir, backend: 'libvirt' }, {})).toMatchObject({ backend: 'libvirt' })
      expect(() => resolveSpec({ restoreFrom: dir, backend: 'qemu' }, {})).toThrow(/saved by the libvirt backend, so only that backend can start a clone of it/)
      // The QEMU backend's record names no backend.
      await writeFile(join(dir, 'snapshot.json'), JSON.stringify({ launch }))
      expect(resolveSpec({ restoreFrom: dir }, { VMHARNESS_BACKEND: 'libvirt' })).toMatchObject({ backend: 'qemu', libvirtUri: undefined })
      expect(() => resolveSpec({ restoreFrom: dir, backend: 'libvirt' }, {})).toThrow(SpecError)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
