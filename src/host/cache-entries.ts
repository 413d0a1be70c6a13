import { lstat, readdir, readFile, rm, utimes } from 'node:fs/promises'
import { join } from 'node:path'
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
 * Removes entries not used since `olderThan` (all of them when it is undefined), and half-built
 * ones more than an hour old. Each removal holds the entry's build lock, so it never races a
 * build of the same key.
 */
export async function pruneCache(olderThan: Date | undefined): Promise<CacheEntry[]> {
  const removed: CacheEntry[] = []
  const abandoned = Date.now() - 3_600_000
  for (const entry of await listCacheEntries()) {
    const stale = olderThan === undefined || entry.lastUsed < olderThan || (!entry.complete && entry.lastUsed.getTime() < abandoned)
    if (!stale) continue
    const lockName = entry.key.startsWith('.tmp-') ? undefined : `${entry.key}.lock`
    const remove = () => rm(entry.dir, { recursive: true, force: true })
    await (lockName ? withFileLock(join(cacheRoot(), entry.kind, lockName), remove) : remove())
    removed.push(entry)
  }
  return removed
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
