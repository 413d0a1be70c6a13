import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { memoizedFileSha256 } from '../../src/host/file-digest.js'
import { harnessCodeDigest, treeDigest } from '../../src/common/harness-code.js'
import { qemuIdentity } from '../../src/host/qemu-identity.js'
import { goldenKeyOf, type GoldenKeyInputs } from '../../src/machine/golden.js'
import { resolveSpec } from '../../src/spec/vm-spec.js'
import { useTemporaryCache } from '../helpers/temporary-cache.js'

const cacheDir = useTemporaryCache('file')

const base: GoldenKeyInputs = {
  harnessCode: 'a'.repeat(64),
  backend: 'qemu',
  spec: resolveSpec({ image: 'tiny', name: 'web' }),
  setupSource: '(vm) => vm.succeed("true")',
  setupKey: '',
  hypervisorBinary: '/usr/bin/qemu-system-x86_64\u00009000\u000012\u00001700000000000\u0000QEMU emulator version 7.2.19',
  imageFiles: { disk: 'd'.repeat(64), kernel: 'k'.repeat(64), initrd: 'i'.repeat(64) },
  imageKernelArgs: ['console=ttyS0'],
}

describe('golden snapshot key', () => {
  it('is the same for the same inputs, and ignores the name, restoreFrom and the boot timeout', () => {
    expect(goldenKeyOf({ ...base })).toBe(goldenKeyOf(base))
    const renamed = { ...base, spec: { ...base.spec, name: 'db', restoreFrom: '/elsewhere', bootTimeoutMs: 5 } }
    expect(goldenKeyOf(renamed)).toBe(goldenKeyOf(base))
  })

  const changes: [string, Partial<GoldenKeyInputs>][] = [
    ['the harness code', { harnessCode: 'b'.repeat(64) }],
    ['the backend', { backend: 'noop' }],
    ['the spec (memory)', { spec: resolveSpec({ image: 'tiny', name: 'web', memory: 512 }) }],
    ['the spec (kernel args)', { spec: resolveSpec({ image: 'tiny', name: 'web', kernelArgs: ['quiet'] }) }],
    ['the setup source', { setupSource: '(vm) => vm.succeed("false")' }],
    ['the setupKey', { setupKey: 'v2' }],
    ['the QEMU binary', { hypervisorBinary: base.hypervisorBinary.replace('7.2.19', '8.0.0') }],
    ['the disk image', { imageFiles: { ...base.imageFiles, disk: 'e'.repeat(64) } }],
    ['the kernel', { imageFiles: { ...base.imageFiles, kernel: 'l'.repeat(64) } }],
    ['the initrd', { imageFiles: { ...base.imageFiles, initrd: undefined } }],
    ["the image's kernel line", { imageKernelArgs: ['console=ttyS0', 'quiet'] }],
  ]
  it.each(changes)('changes with %s', (_what, change) => {
    expect(goldenKeyOf({ ...base, ...change })).not.toBe(goldenKeyOf(base))
  })
})

describe('inputs of the key', () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmharness-key-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it("an image file's digest follows its content, and is remembered in a sidecar file in the cache", async () => {
    const file = join(dir, 'disk.img')
    await writeFile(file, 'one')
    const first = await memoizedFileSha256(file)
    expect(first).toBe('7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed')
    expect(await memoizedFileSha256(file)).toBe(first)
    expect(await readdir(join(cacheDir(), 'file-digests'))).toHaveLength(1)
    await writeFile(file, 'two')
    expect(await memoizedFileSha256(file)).not.toBe(first)
    expect(await readdir(join(cacheDir(), 'file-digests'))).toHaveLength(2)
  })

  it('the code digest changes when any file of the tree changes, is stable otherwise, and skips type declarations', async () => {
    const tree = join(dir, 'tree')
    await mkdir(join(tree, 'machine'), { recursive: true })
    await writeFile(join(tree, 'machine', 'vm.js'), 'export const a = 1\n')
    await writeFile(join(tree, 'index.js'), 'export {}\n')
    const first = await treeDigest([tree])
    expect(await treeDigest([tree])).toBe(first)
    await writeFile(join(tree, 'machine', 'vm.d.ts'), 'export declare const a: number\n')
    expect(await treeDigest([tree])).toBe(first)
    await writeFile(join(tree, 'machine', 'vm.js'), 'export const a = 2\n')
    expect(await treeDigest([tree])).not.toBe(first)
  })

  it("the running harness's code digest is computed once per process", async () => {
    const digest = await harnessCodeDigest()
    expect(digest).toMatch(/^[0-9a-f]{64}$/)
    expect(harnessCodeDigest()).toBe(harnessCodeDigest())
  })

  it("a QEMU's identity changes with its --version", async () => {
    const fake = (version: string) => `#!/bin/sh\necho '${version}'\n`
    const a = join(dir, 'qemu-a')
    const b = join(dir, 'qemu-b')
    await writeFile(a, fake('QEMU emulator version 7.2.19'), { mode: 0o755 })
    await writeFile(b, fake('QEMU emulator version 8.0.0'), { mode: 0o755 })
    const [idA, idB] = [await qemuIdentity(a), await qemuIdentity(b)]
    expect(idA).toContain('QEMU emulator version 7.2.19')
    expect(idB).toContain('QEMU emulator version 8.0.0')
    expect(idA).not.toBe(idB)
    expect(await qemuIdentity(a)).toBe(idA)
  })
})
