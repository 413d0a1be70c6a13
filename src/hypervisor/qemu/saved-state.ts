import { open, readFile, stat, writeFile } from 'node:fs/promises'
import { isAbsolute, join, relative, resolve } from 'node:path'
import { PromiseCache } from '../../common/promise-cache.js'
import { SnapshotError, SnapshotMismatchError } from '../../errors.js'
import { fileSha256 } from '../../common/content-hash.js'
import { cacheRoot } from '../../host/cache-dir.js'
import { assertPrivateFile } from '../../host/private-file.js'
import { buildQemuArgv, type QemuLaunch } from './qemu-argv.js'

/**
 * An external snapshot on disk, one directory:
 *   disk.qcow2     the frozen disk (its backing file is the image's base)
 *
 * Paths to files in the vmharness cache (the kernel, initrd and base disk of a cached image) are
 * recorded relative to the snapshot's directory when the snapshot lies in the cache too (a
 * golden snapshot), so that a cache moved as a whole, as a CI cache restored at another path,
 * still finds them. Every other path is recorded as it is.
 *   state.bin      RAM and device state, as QEMU's migration stream
 *   seed.iso       the NoCloud seed the guest booted with (same devices on restore)
 *   client_key     the SSH key the guest authorises (0600): clones are reached with it
 *   console.log    what the guest had printed: a clone's console log starts with it
 *   snapshot.json  written last: a directory without it is incomplete and never loaded
 */
export const savedStateFiles = { disk: 'disk.qcow2', state: 'state.bin', seed: 'seed.iso', clientKey: 'client_key', console: 'console.log', meta: 'snapshot.json' }

const formatVersion = 2

export type SavedLaunch = Pick<QemuLaunch, 'accel' | 'machine' | 'cpuModel' | 'memoryMiB' | 'cpus' | 'kernel' | 'initrd' | 'kernelArgs' | 'networks' | 'outsideAccess'>

export interface SavedStateMeta {
  format: number
  name: string
  launch: SavedLaunch
  hasSeed: boolean
  /** The command line with paths and ports blanked: what must match for QEMU to accept the state. */
  devices: string[]
  ssh: { user: string; hostKey: string }
  readyMarker: string | undefined
  failureMarker: string | undefined
  stateBytes: number
  diskBytes: number
  /** Checked once per process before the first load: a damaged file is refused, never loaded half. */
  stateSha256: string
  diskSha256: string
  createdAt: string
}

export interface SavedState {
  dir: string
  meta: SavedStateMeta
  clientKey: string
}

export function deviceFingerprint(launch: SavedLaunch, hasSeed: boolean): string[] {
  return buildQemuArgv({
    ...launch,
    kernel: launch.kernel ? 'KERNEL' : undefined,
    initrd: launch.initrd ? 'INITRD' : undefined,
    kernelArgs: [],
    networks: launch.networks?.map((nic) => ({ ...nic, switchSocket: 'SWITCH' })),
    disk: 'DISK',
    seedIso: hasSeed ? 'SEED' : undefined,
    sshHostPort: 0,
    qmpSocket: 'QMP',
    consoleSocket: 'CONSOLE',
    consoleLog: 'LOG',
  })
}

/** How a snapshot in `dir` records `target`: relative to `dir` when both lie in the cache, else as it is. */
export function recordedPath(dir: string, target: string, root: string = cacheRoot()): string {
  const inside = (path: string) => {
    const fromRoot = relative(resolve(root), resolve(path))
    return fromRoot !== '' && !fromRoot.startsWith('..') && !isAbsolute(fromRoot)
  }
  return inside(dir) && inside(target) ? relative(resolve(dir), resolve(target)) : target
}

/** The path a snapshot in `dir` means by `recorded` (see recordedPath). */
export function recordedTarget(dir: string, recorded: string): string {
  return isAbsolute(recorded) ? recorded : resolve(dir, recorded)
}

export async function writeSavedStateMeta(
  dir: string,
  meta: Omit<SavedStateMeta, 'format' | 'stateBytes' | 'diskBytes' | 'stateSha256' | 'diskSha256' | 'devices'>,
  clientKey: string,
): Promise<SavedStateMeta> {
  await writeFile(join(dir, savedStateFiles.clientKey), clientKey, { mode: 0o600 })
  const { kernel, initrd } = meta.launch
  const full: SavedStateMeta = {
    format: formatVersion,
    ...meta,
    launch: { ...meta.launch, kernel: kernel && recordedPath(dir, kernel), initrd: initrd && recordedPath(dir, initrd) },
    devices: deviceFingerprint(meta.launch, meta.hasSeed),
    stateBytes: (await stat(join(dir, savedStateFiles.state))).size,
    diskBytes: (await stat(join(dir, savedStateFiles.disk))).size,
    stateSha256: await fileSha256(join(dir, savedStateFiles.state)),
    diskSha256: await fileSha256(join(dir, savedStateFiles.disk)),
  }
  await writeFile(join(dir, savedStateFiles.meta), JSON.stringify(full, null, 2), { mode: 0o600 })
  return full
}

/** Reads a saved state and checks that it is whole: every file present, at the size recorded. */
export async function readSavedState(dir: string): Promise<SavedState> {
  let meta: SavedStateMeta
  try {
    meta = JSON.parse(await readFile(join(dir, savedStateFiles.meta), 'utf8')) as SavedStateMeta
  } catch (error) {
    throw new SnapshotError(`${dir} is not a complete saved state (no readable ${savedStateFiles.meta}): save it again`, dir, { cause: error })
  }
  if (meta.format !== formatVersion) throw new SnapshotError(`was saved in format ${meta.format}, this version reads ${formatVersion}: save it again`, meta.name)
  const sizes: [string, number][] = [
    [savedStateFiles.state, meta.stateBytes],
    [savedStateFiles.disk, meta.diskBytes],
  ]
  for (const [file, expected] of sizes) {
    const actual = (await stat(join(dir, file)).catch(() => undefined))?.size
    if (actual !== expected) {
      throw new SnapshotError(`${file} in ${dir} is ${actual === undefined ? 'missing' : `${actual} bytes, expected ${expected}`} (truncated or damaged): save it again`, meta.name)
    }
  }
  await verifyContents(dir, meta)
  meta.launch.kernel = meta.launch.kernel && recordedTarget(dir, meta.launch.kernel)
  meta.launch.initrd = meta.launch.initrd && recordedTarget(dir, meta.launch.initrd)
  await assertReferencesExist(dir, meta)
  const keyPath = join(dir, savedStateFiles.clientKey)
  await assertPrivateFile(keyPath, 'the saved client key', `remove ${dir} and save the snapshot again`)
  const clientKey = await readFile(keyPath, 'utf8').catch(() => '')
  if (!clientKey) throw new SnapshotError(`${dir} lacks its client key: save it again`, meta.name)
  return { dir, meta, clientKey }
}

/**
 * A saved state needs files outside its directory (the kernel, the initrd, the disk its frozen
 * disk lies on) and its seed: one that is gone (a half-restored or pruned cache, a moved image)
 * makes QEMU fail at start, so it is refused here as a damaged snapshot instead.
 */
async function assertReferencesExist(dir: string, meta: SavedStateMeta): Promise<void> {
  const backing = await qcow2BackingFile(join(dir, savedStateFiles.disk))
  const needed: [string, string | undefined][] = [
    ['kernel', meta.launch.kernel],
    ['initrd', meta.launch.initrd],
    ['base disk', backing && recordedTarget(dir, backing)],
    ['seed', meta.hasSeed ? join(dir, savedStateFiles.seed) : undefined],
  ]
  for (const [what, path] of needed) {
    if (path && !(await stat(path).catch(() => undefined))?.isFile()) {
      throw new SnapshotError(`its ${what} ${path} is missing (a cache restored in part, or an image removed since): save it again`, meta.name)
    }
  }
}

/** The backing file name a qcow2 image's header records (undefined for none, or a file that is not qcow2). */
export async function qcow2BackingFile(path: string): Promise<string | undefined> {
  const file = await open(path, 'r').catch(() => undefined)
  if (!file) return undefined
  try {
    const header = Buffer.alloc(20)
    await file.read(header, 0, 20, 0)
    if (header.readUInt32BE(0) !== 0x514649fb) return undefined
    const offset = Number(header.readBigUInt64BE(8))
    const length = header.readUInt32BE(16)
    if (offset === 0 || length === 0 || length > 4096) return undefined
    const name = Buffer.alloc(length)
    await file.read(name, 0, length, offset)
    return name.toString('utf8')
  } finally {
    await file.close()
  }
}

const verified = new PromiseCache<string, void>()

/**
 * Compares the RAM state and frozen disk with the hashes taken when they were saved. Bytes
 * damaged at rest would otherwise load silently into the guest. Done once per process for each
 * file version (path, size and mtime), so clones after the first pay nothing.
 */
async function verifyContents(dir: string, meta: SavedStateMeta): Promise<void> {
  for (const [file, expected] of [
    [savedStateFiles.state, meta.stateSha256],
    [savedStateFiles.disk, meta.diskSha256],
  ] as const) {
    const path = join(dir, file)
    const info = await stat(path)
    const key = `${path}:${info.size}:${info.mtimeMs}`
    await verified.get(key, () =>
      fileSha256(path).then((actual) => {
        if (actual !== expected) throw new SnapshotError(`${file} in ${dir} does not match the hash taken when it was saved (damaged): save it again`, meta.name)
      }),
    )
  }
}

/** Every way the VM about to start differs from the one the state was saved from. */
export function launchDifferences(saved: SavedStateMeta, launch: SavedLaunch, hasSeed: boolean): string[] {
  const differences: string[] = []
  const fields: [string, unknown, unknown][] = [
    ['memory (MiB)', saved.launch.memoryMiB, launch.memoryMiB],
    ['cpus', saved.launch.cpus, launch.cpus],
    ['machine', saved.launch.machine, launch.machine],
    ['accelerator', saved.launch.accel, launch.accel],
    ['cpu model', saved.launch.cpuModel ?? 'default', launch.cpuModel ?? 'default'],
    ['seed disk', saved.hasSeed, hasSeed],
    ['networks', describeNics(saved.launch), describeNics(launch)],
    ['outside access', saved.launch.outsideAccess ?? false, launch.outsideAccess ?? false],
  ]
  for (const [field, was, now] of fields) {
    if (was !== now) differences.push(`${field}: saved with ${String(was)}, asked for ${String(now)}`)
  }
  if (differences.length === 0 && deviceFingerprint(launch, hasSeed).join(' ') !== saved.devices.join(' ')) {
    differences.push('the device set differs (saved by another vmharness version?)')
  }
  return differences
}

function describeNics(launch: SavedLaunch): string {
  const nics = (launch.networks ?? []).map((nic) => `network ${nic.index} as machine ${nic.node}`)
  return nics.length > 0 ? nics.join(', ') : 'none'
}

export function assertLaunchFits(saved: SavedStateMeta, launch: SavedLaunch, hasSeed: boolean): void {
  const differences = launchDifferences(saved, launch, hasSeed)
  if (differences.length > 0) throw new SnapshotMismatchError(saved.name, differences)
}
