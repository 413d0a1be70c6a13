import { createHash } from 'node:crypto'
import { open, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { HostError } from '../../errors.js'
import { cacheSubdir } from '../../host/cache-dir.js'
import { memoizedFileSha256 } from '../../host/file-digest.js'
import { withFileLock } from '../../host/file-lock.js'
import type { LibvirtConnection } from './libvirt-connection.js'
import { unescapeXml } from './save-file.js'

/** The pool the harness keeps its volumes in: VMHARNESS_LIBVIRT_POOL, else one of its own. */
export function poolName(env: NodeJS.ProcessEnv = process.env): string {
  return env.VMHARNESS_LIBVIRT_POOL || 'vmharness'
}

const ownPoolPath = '/var/lib/libvirt/vmharness'

export interface Pool {
  name: string
  /** Its directory on the hypervisor host: a volume's path there is `${path}/${volume}`. */
  path: string
}

/** The pool, created (a directory pool on the hypervisor host) and started when it is not there yet. */
export async function ensurePool(connection: LibvirtConnection, name = poolName()): Promise<Pool> {
  if (!(await connection.tryRun(['pool-info', name]))) {
    // Several workers may get here at once: one defines it, the others see it defined.
    await connection.tryRun(['pool-define-as', name, 'dir', '--target', ownPoolPath])
    await connection.tryRun(['pool-build', name])
  }
  const info = await connection.run(['pool-info', name])
  if (!/State:\s+running/.test(info)) await connection.run(['pool-start', name]).catch(async (error: unknown) => {
    if (!/running/.test(await connection.run(['pool-info', name]))) throw error
  })
  await connection.tryRun(['pool-autostart', name])
  const xml = await connection.run(['pool-dumpxml', name])
  const path = unescapeXml(/<target>\s*<path>([^<]+)<\/path>/.exec(xml)?.[1] ?? '')
  if (!/<pool type=['"]dir['"]/.test(xml) || !path) {
    throw new HostError(`libvirt pool '${name}' on ${connection.uri} is not a directory pool`, 'point VMHARNESS_LIBVIRT_POOL at a directory pool (pool-define-as NAME dir --target /path), or unset it to let the harness make its own')
  }
  return { name, path }
}

export function volumePath(pool: Pool, volume: string): string {
  return `${pool.path}/${volume}`
}

/** Whether the pool has `volume`; any failure other than "not found" (a lost daemon, say) is thrown, never taken for absence. */
export async function volumeExists(connection: LibvirtConnection, pool: Pool, volume: string): Promise<boolean> {
  try {
    await connection.run(['vol-info', '--pool', pool.name, volume])
    return true
  } catch (error) {
    if (/Storage volume not found|no storage vol with matching/i.test((error as Error).message)) return false
    throw error
  }
}

/** Fails with a HostError naming the pool when it has less room than `bytes`. */
export async function assertRoom(connection: LibvirtConnection, pool: Pool, bytes: number, what: string): Promise<void> {
  await connection.tryRun(['pool-refresh', pool.name])
  const info = await connection.run(['pool-info', '--bytes', pool.name])
  const available = Number(/Available:\s+(\d+)/.exec(info)?.[1] ?? Number.NaN)
  if (Number.isFinite(available) && available < bytes) {
    const mib = (n: number) => `${Math.ceil(n / 1024 / 1024)} MiB`
    throw new HostError(`libvirt pool '${pool.name}' on ${connection.uri} has ${mib(available)} free, but ${what} needs ${mib(bytes)}`, `free space in ${pool.path} on that host (old vmh-* volumes: vmharness images prune), or point VMHARNESS_LIBVIRT_POOL at a pool with room`)
  }
}

/**
 * A local file as a volume of the pool, uploaded once per content: its name carries the file's
 * sha256, and a small `.done` volume is written only after the upload completed, so a half
 * upload (a killed run) is redone. Workers of this machine take turns through a file lock.
 */
export async function uploadOnce(connection: LibvirtConnection, pool: Pool, localFile: string, label: string): Promise<string> {
  const digest = await memoizedFileSha256(localFile)
  const volume = `vmh-img-${digest.slice(0, 24)}-${label}`
  const done = `${volume}.done`
  if (await volumeExists(connection, pool, done)) return volume
  const lock = join(await cacheSubdir('locks'), `libvirt-${createHash('sha256').update(`${connection.uri}\0${volume}`).digest('hex').slice(0, 24)}.lock`)
  return withFileLock(lock, async () => {
    if (await volumeExists(connection, pool, done)) return volume
    await connection.tryRun(['vol-delete', '--pool', pool.name, volume])
    await uploadVolume(connection, pool, volume, localFile, await fileFormat(localFile))
    await connection.run(['vol-create-as', pool.name, done, '0', '--format', 'raw'])
    return volume
  })
}

/** Creates `volume` from a local file (the seed of one VM, say). */
export async function uploadVolume(connection: LibvirtConnection, pool: Pool, volume: string, localFile: string, format: 'raw' | 'qcow2' = 'raw'): Promise<void> {
  const size = (await stat(localFile)).size
  await assertRoom(connection, pool, size, `uploading ${volume}`)
  await connection.run(['vol-create-as', pool.name, volume, String(Math.max(size, 1)), '--format', format])
  try {
    await connection.run(['vol-upload', '--pool', pool.name, volume, localFile], 30 * 60_000)
  } catch (error) {
    await connection.tryRun(['vol-delete', '--pool', pool.name, volume])
    throw error
  }
}

/** A qcow2 volume whose contents lie on `backing` (a copy-on-write overlay). */
export async function createOverlay(connection: LibvirtConnection, pool: Pool, volume: string, backing: string, backingFormat: 'raw' | 'qcow2' = 'qcow2'): Promise<void> {
  const info = await connection.run(['vol-info', '--bytes', '--pool', pool.name, backing])
  const capacity = /Capacity:\s+(\d+)/.exec(info)?.[1]
  if (!capacity) throw new HostError(`cannot read the size of volume ${backing} in pool '${pool.name}'`, 'check the pool on that host')
  await connection.run(['vol-create-as', pool.name, volume, capacity, '--format', 'qcow2', '--backing-vol', backing, '--backing-vol-format', backingFormat])
}

export async function deleteVolume(connection: LibvirtConnection, pool: Pool, volume: string): Promise<void> {
  await connection.tryRun(['vol-delete', '--pool', pool.name, volume])
}

/** The volumes of the pool whose names start with `prefix`. */
export async function volumesStartingWith(connection: LibvirtConnection, pool: Pool, prefix: string): Promise<string[]> {
  await connection.tryRun(['pool-refresh', pool.name])
  // Lines of `name  path`; the harness's names hold no spaces.
  const listing = await connection.run(['vol-list', '--pool', pool.name])
  return listing
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name.startsWith(prefix))
}

/** A local image file's format, from its first bytes. */
export async function fileFormat(localFile: string): Promise<'raw' | 'qcow2'> {
  const handle = await open(localFile, 'r')
  try {
    const magic = Buffer.alloc(4)
    await handle.read(magic, 0, 4, 0)
    return magic.toString('latin1') === 'QFI\xfb' ? 'qcow2' : 'raw'
  } finally {
    await handle.close()
  }
}
