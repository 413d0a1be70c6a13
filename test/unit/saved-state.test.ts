import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { HostError, SnapshotError, SnapshotMismatchError } from '../../src/errors.js'
import { assertLaunchFits, launchDifferences, readSavedState, writeSavedStateMeta, type SavedLaunch } from '../../src/hypervisor/qemu/saved-state.js'
import { skipBecause } from '../helpers/skip.js'

const launch: SavedLaunch = { accel: 'tcg', machine: 'microvm', memoryMiB: 256, cpus: 1, kernel: '/k', initrd: '/i', kernelArgs: ['console=ttyS0'] }
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
})
