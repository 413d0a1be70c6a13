import { mkdtempSync, writeFileSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { HostError, SnapshotError, SnapshotMismatchError } from '../../src/errors.js'
import { assertLaunchFits, launchDifferences, qcow2BackingFile, readSavedState, recordedPath, writeSavedStateMeta, type SavedLaunch } from '../../src/hypervisor/qemu/saved-state.js'
import { skipBecause } from '../helpers/skip.js'

// The kernel and initrd a saved state boots with must exist when it is read.
const bootFiles = mkdtempSync(join(tmpdir(), 'vmharness-boot-'))
writeFileSync(join(bootFiles, 'k'), 'kernel')
writeFileSync(join(bootFiles, 'i'), 'initrd')
afterAll(() => rm(bootFiles, { recursive: true, force: true }))
const launch: SavedLaunch = { accel: 'tcg', machine: 'microvm', memoryMiB: 256, cpus: 1, kernel: join(bootFiles, 'k'), initrd: join(bootFiles, 'i'), kernelArgs: ['console=ttyS0'] }
let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vmharness-saved-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function save(): Promise<void> {
  await writeFile(join(dir, 'state.bin'), Buffer.alloc(4096, 1))
  await writeFile(join(dir, 'disk.qcow2'), Buffer.alloc(1024, 2))
  await writeFile(join(dir, 'seed.iso'), 'seed')
  await writeSavedStateMeta(dir, { name: 'golden', launch, hasSeed: true, ssh: { user: 'root', hostKey: 'ssh-ed25519 AAAA' }, readyMarker: undefined, failureMarker: undefined, createdAt: 'now' }, 'PRIVATE KEY')
}

describe('saved states on disk', () => {
  it('reads back a whole one', async () => {
    await save()
    const saved = await readSavedState(dir)
    expect(saved.meta.launch).toEqual(launch)
    expect(saved.clientKey).toBe('PRIVATE KEY')
  })

  it('refuses a directory without its metadata, and files of the wrong size', async () => {
    await expect(readSavedState(dir)).rejects.toThrow(/not a complete saved state/)
    await save()
    await writeFile(join(dir, 'state.bin'), Buffer.alloc(100))
    await expect(readSavedState(dir)).rejects.toThrow(SnapshotError)
    await expect(readSavedState(dir)).rejects.toThrow(/state.bin .* is 100 bytes, expected 4096/)
    await rm(join(dir, 'disk.qcow2'))
    await writeFile(join(dir, 'state.bin'), Buffer.alloc(4096))
    await expect(readSavedState(dir)).rejects.toThrow(/disk.qcow2 .* is missing/)
  })

  it('refuses a client key that other users can read, saying how to fix it', async () => {
    await save()
    const key = join(dir, 'client_key')
    await chmod(key, 0o644)
    const readable = await readSavedState(dir).catch((error: unknown) => error)
    expect(readable).toBeInstanceOf(HostError)
    expect((readable as Error).message).toContain(`the saved client key ${key} can be read or written by other users (mode 644)`)
    expect((readable as HostError).fix).toBe(`chmod 600 ${key}, or remove ${dir} and save the snapshot again`)
    await chmod(key, 0o600)
    await expect(readSavedState(dir)).resolves.toMatchObject({ clientKey: 'PRIVATE KEY' })
  })

  it('refuses a client key that another user owns, saying how to fix it', async (context) => {
    if (process.getuid?.() !== 0) skipBecause(context, 'only root can give a file to another user (the mode check above runs everywhere)')
    await save()
    const key = join(dir, 'client_key')
    await chown(key, 65534, 65534) // nobody
    const foreign = await readSavedState(dir).catch((error: unknown) => error)
    expect(foreign).toBeInstanceOf(HostError)
    expect((foreign as Error).message).toContain(`the saved client key ${key} belongs to another user (uid 65534)`)
    expect((foreign as HostError).fix).toBe(`remove ${dir} and save the snapshot again`)
  })

  it('refuses a state file damaged in place (same size, other bytes), never handing it to QEMU', async () => {
    await save()
    const damaged = Buffer.alloc(4096, 1)
    damaged[2000] = 0xff
    await writeFile(join(dir, 'state.bin'), damaged)
    await expect(readSavedState(dir)).rejects.toThrow(/state.bin in .* does not match the hash taken when it was saved \(damaged\): save it again/)
    await writeFile(join(dir, 'state.bin'), Buffer.alloc(4096, 1))
    await expect(readSavedState(dir)).resolves.toMatchObject({ clientKey: 'PRIVATE KEY' })
  })

  it('names every device difference, and accepts the same launch', async () => {
    await save()
    const { meta } = await readSavedState(dir)
    expect(launchDifferences(meta, launch, true)).toEqual([])
    expect(launchDifferences(meta, { ...launch, memoryMiB: 512, cpus: 2, machine: 'pc' }, false)).toEqual([
      'memory (MiB): saved with 256, asked for 512',
      'cpus: saved with 1, asked for 2',
      'machine: saved with microvm, asked for pc',
      'seed disk: saved with true, asked for false',
    ])
    expect(() => assertLaunchFits(meta, { ...launch, accel: 'kvm' }, true)).toThrow(SnapshotMismatchError)
    expect(launchDifferences(meta, { ...launch, cpuModel: 'max' }, true)).toEqual(['cpu model: saved with default, asked for max'])
  })

  it('refuses a state whose kernel, initrd or seed is gone (a cache restored in part), as a damaged snapshot', async () => {
    await save()
    await rm(join(dir, 'seed.iso'))
    await expect(readSavedState(dir)).rejects.toThrow(/its seed .*seed.iso is missing/)
    await writeFile(join(dir, 'seed.iso'), 'seed')
    await rm(join(bootFiles, 'i'))
    const error = await readSavedState(dir).catch((caught: unknown) => caught)
    writeFileSync(join(bootFiles, 'i'), 'initrd')
    expect(error).toBeInstanceOf(SnapshotError)
    expect((error as Error).message).toMatch(/its initrd .*\/i is missing/)
  })
})

describe('saved states in a cache that moves', () => {
  let cache: string
  beforeEach(async () => {
    cache = await mkdtemp(join(tmpdir(), 'vmharness-moving-'))
  })
  afterEach(async () => {
    await rm(cache, { recursive: true, force: true })
  })

  it('records paths into the cache relative to a snapshot that lies in it, and every other path as it is', () => {
    const snapshot = join(cache, 'golden', 'k', 'snapshot')
    expect(recordedPath(snapshot, join(cache, 'images', 'tiny-1', 'vmlinuz'), cache)).toBe('../../../images/tiny-1/vmlinuz')
    expect(recordedPath(snapshot, '/usr/share/my-image.qcow2', cache)).toBe('/usr/share/my-image.qcow2')
    expect(recordedPath('/tmp/elsewhere', join(cache, 'images', 'tiny-1', 'vmlinuz'), cache)).toBe(join(cache, 'images', 'tiny-1', 'vmlinuz'))
    expect(recordedPath(join(`${cache}-sibling`, 'x'), join(`${cache}-sibling`, 'y'), cache)).toBe(join(`${cache}-sibling`, 'y'))
  })

  it('finds the kernel, initrd and base disk of a golden snapshot after the whole cache is copied elsewhere and the original removed', async () => {
    const previous = process.env.VMHARNESS_CACHE
    process.env.VMHARNESS_CACHE = join(cache, 'a')
    try {
      const image = join(cache, 'a', 'images', 'tiny-1')
      const snapshot = join(cache, 'a', 'golden', 'k', 'snapshot')
      await mkdir(image, { recursive: true })
      await mkdir(snapshot, { recursive: true })
      await writeFile(join(image, 'vmlinuz'), 'kernel')
      await writeFile(join(image, 'initrd.img'), 'initrd')
      await execa('qemu-img', ['create', '-q', '-f', 'qcow2', join(image, 'disk.qcow2'), '16M'])
      await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', join(image, 'disk.qcow2'), '-F', 'qcow2', join(snapshot, 'disk.qcow2')])
      // What saveExternalSnapshot does with the frozen disk's backing file:
      await execa('qemu-img', ['rebase', '-u', '-F', 'qcow2', '-b', recordedPath(snapshot, join(image, 'disk.qcow2')), join(snapshot, 'disk.qcow2')])
      await writeFile(join(snapshot, 'state.bin'), Buffer.alloc(4096, 1))
      await writeFile(join(snapshot, 'seed.iso'), 'seed')
      await writeSavedStateMeta(snapshot, { name: 'golden', launch: { ...launch, kernel: join(image, 'vmlinuz'), initrd: join(image, 'initrd.img') }, hasSeed: true, ssh: { user: 'root', hostKey: 'k' }, readyMarker: undefined, failureMarker: undefined, createdAt: 'now' }, 'KEY')
      expect(JSON.parse(await readFile(join(snapshot, 'snapshot.json'), 'utf8')).launch).toMatchObject({ kernel: '../../../images/tiny-1/vmlinuz', initrd: '../../../images/tiny-1/initrd.img' })
      expect(await qcow2BackingFile(join(snapshot, 'disk.qcow2'))).toBe('../../../images/tiny-1/disk.qcow2')

      await execa('cp', ['-a', join(cache, 'a'), join(cache, 'b')])
      await rm(join(cache, 'a'), { recursive: true, force: true })
      const moved = await readSavedState(join(cache, 'b', 'golden', 'k', 'snapshot'))
      expect(moved.meta.launch.kernel).toBe(join(cache, 'b', 'images', 'tiny-1', 'vmlinuz'))
      expect(moved.meta.launch.initrd).toBe(join(cache, 'b', 'images', 'tiny-1', 'initrd.img'))
      const chain = await execa('qemu-img', ['info', '--backing-chain', '--output=json', join(cache, 'b', 'golden', 'k', 'snapshot', 'disk.qcow2')])
      expect((JSON.parse(chain.stdout) as { filename: string }[]).map((layer) => layer.filename)).toHaveLength(2)

      // Half restored: the image's disk did not come back.
      await rm(join(cache, 'b', 'images', 'tiny-1', 'disk.qcow2'))
      await expect(readSavedState(join(cache, 'b', 'golden', 'k', 'snapshot'))).rejects.toThrow(/its base disk .*images\/tiny-1\/disk.qcow2 is missing/)
    } finally {
      if (previous === undefined) delete process.env.VMHARNESS_CACHE
      else process.env.VMHARNESS_CACHE = previous
    }
  })
})
