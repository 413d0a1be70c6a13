import { lstat, readdir, readFile, readlink, realpath, rm, utimes } from 'node:fs/promises'
import { join, sep } from 'node:path'
import { cacheRoot } from './cache-dir.js'
import { withFileLock } from './file-lock.js'

/** The file whose presence says a cache entry is complete, per kind of entry. */
const completeMarkers = { images: 'manifest.json', golden: 'golden.json' } as const
export type CacheKind = keyof typeof completeMarkers

export interface CacheEntry {
  kind: CacheKind
  key: string
  dir: string
  /** Disk space actually used (sparse files count what they hold). */
  bytes: number
  /** When a run last used it (the marker's mtime, refreshed on every use). */
  lastUsed: Date
  complete: boolean
}

/** Records that an entry was used now, so pruning by age keeps what suites still use. */
export async function markUsed(entryDir: string, kind: CacheKind): Promise<void> {
  const now = new Date()
  await utimes(join(entryDir, completeMarkers[kind]), now, now).catch(() => undefined)
}

/** Every entry in the cache, complete or left half-built by a killed build. */
export async function listCacheEntries(): Promise<CacheEntry[]> {
  const entries: CacheEntry[] = []
  for (const kind of Object.keys(completeMarkers) as CacheKind[]) {
    const root = join(cacheRoot(), kind)
    for (const name of await readdir(root).catch(() => [] as string[])) {
      const dir = join(root, name)
      const info = await lstat(dir)
      if (!info.isDirectory()) continue
      const marker = await lstat(join(dir, completeMarkers[kind])).catch(() => undefined)
      entries.push({ kind, key: name, dir, bytes: await diskUsage(dir), lastUsed: marker?.mtime ?? info.mtime, complete: marker !== undefined })
    }
  }
  return entries.sort((a, b) => a.kind.localeCompare(b.kind) || b.lastUsed.getTime() - a.lastUsed.getTime())
}

/**
 * Removes entries not used since `olderThan` (all of them when it is undefined, none by age when
 * it is null), and half-built ones more than an hour old. Then, while the cache holds more than
 * `maxBytes`, the least recently used of the rest, skipping any that a process has a file open
 * in (a running VM's disk chain). Each removal holds the entry's build lock, so it never races a
 * build of the same key. Memoised file digests (`file-digests/`) older than `olderThan` go too:
 * one removed is only computed again.
 */
export async function pruneCache(olderThan: Date | undefined | null, options: { maxBytes?: number } = {}): Promise<CacheEntry[]> {
  const removed: CacheEntry[] = []
  const kept: CacheEntry[] = []
  const abandoned = Date.now() - 3_600_000
  for (const entry of await listCacheEntries()) {
    const stale = olderThan === undefined || (olderThan !== null && entry.lastUsed < olderThan) || (!entry.complete && entry.lastUsed.getTime() < abandoned)
    if (stale) {
      await removeEntry(entry)
      removed.push(entry)
    } else kept.push(entry)
  }
  if (olderThan !== null) await pruneFileDigests(olderThan)
  const { maxBytes } = options
  if (maxBytes === undefined) return removed
  let total = kept.reduce((sum, entry) => sum + entry.bytes, 0)
  if (total <= maxBytes) return removed
  const open = await filesOpenByAnyProcess()
  for (const entry of [...kept].sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime())) {
    if (total <= maxBytes) break
    if (!entry.complete || (await isInUse(entry, open))) continue
    const removedNow = await removeEntry(entry, entry.lastUsed)
    if (!removedNow) continue
    total -= entry.bytes
    removed.push(entry)
  }
  return removed
}

/** Removes an entry under its build lock; with `unusedSince`, only if no run has used it since (it may have while we waited). */
async function removeEntry(entry: CacheEntry, unusedSince?: Date): Promise<boolean> {
  const remove = async () => {
    if (unusedSince) {
      const marker = await lstat(join(entry.dir, completeMarkers[entry.kind])).catch(() => undefined)
      if (marker && marker.mtime > unusedSince) return false
    }
    await rm(entry.dir, { recursive: true, force: true })
    return true
  }
  if (entry.key.startsWith('.tmp-')) return remove()
  return withFileLock(join(cacheRoot(), entry.kind, `${entry.key}.lock`), remove)
}

async function pruneFileDigests(olderThan: Date | undefined): Promise<void> {
  const dir = join(cacheRoot(), 'file-digests')
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const info = await lstat(join(dir, name)).catch(() => undefined)
    if (info && (olderThan === undefined || info.mtime < olderThan)) await rm(join(dir, name), { force: true })
  }
}

/** Every path some process has open that this user may see (other users' processes are hidden from non-root). */
export async function filesOpenByAnyProcess(): Promise<Set<string>> {
  const open = new Set<string>()
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => undefined)
      if (target?.startsWith('/')) open.add(target)
    }
  }
  return open
}

async function isInUse(entry: CacheEntry, open: Set<string>): Promise<boolean> {
  // /proc names files by their real path.
  const prefix = (await realpath(entry.dir).catch(() => entry.dir)) + sep
  for (const path of open) if (path.startsWith(prefix)) return true
  return false
}

async function diskUsage(path: string): Promise<number> {
  const info = await lstat(path).catch(() => undefined)
  if (!info) return 0
  if (!info.isDirectory()) return info.blocks * 512
  let total = info.blocks * 512
  for (const name of await readdir(path)) total += await diskUsage(join(path, name))
  return total
}

/** The description a golden entry records of itself, or an image's manifest, for listings. */
export async function entryDescription(entry: CacheEntry): Promise<string> {
  const text = await readFile(join(entry.dir, completeMarkers[entry.kind]), 'utf8').catch(() => '')
  if (!text) return entry.complete ? '' : 'incomplete (a build that did not finish)'
  try {
    const record = JSON.parse(text) as { description?: { spec?: { name?: string; image?: unknown } }; kernelRelease?: string; packages?: string[] }
    if (entry.kind === 'golden') return `machine '${record.description?.spec?.name ?? '?'}', image ${JSON.stringify(record.description?.spec?.image ?? '?')}`
    return [record.kernelRelease ? `kernel ${record.kernelRelease}` : '', record.packages ? `${record.packages.length} packages` : ''].filter(Boolean).join(', ')
  } catch {
    return ''
  }
}
