import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cacheSubdir } from '../host/cache-dir.js'
import { markUsed } from '../host/cache-entries.js'
import { withFileLock } from '../host/file-lock.js'

/**
 * Golden snapshots on disk: `<cache>/golden/<key>/snapshot/` holds the backend's saved state and
 * `<key>/golden.json`, written last, says it is complete. A directory without it is a build that
 * died half way: it is removed and built again, never used.
 */
const doneMarker = 'golden.json'

export interface GoldenRecord {
  key: string
  /** What went into the key, for people reading the cache. */
  description: Record<string, unknown>
  createdAt: string
  buildMs: number
}

export interface GoldenEntry {
  key: string
  /** The directory `restoreFrom` takes. */
  snapshotDir: string
}

function entryDir(root: string, key: string): string {
  return join(root, key)
}

export async function findGolden(key: string): Promise<GoldenEntry | undefined> {
  const dir = entryDir(await cacheSubdir('golden'), key)
  const record = await readFile(join(dir, doneMarker), 'utf8').then((text) => JSON.parse(text) as Partial<GoldenRecord>).catch(() => undefined)
  // A marker of another key (an entry copied or renamed by hand) says nothing about this one.
  if (record?.key !== key) return undefined
  await markUsed(dir, 'golden')
  return { key, snapshotDir: join(dir, 'snapshot') }
}

/**
 * Returns the golden entry for `key`, building it with `build` (which must write the snapshot
 * into the directory it is given) when no complete one exists. Runs under a lock, so parallel
 * workers build it once: the others wait and then use it.
 */
export async function ensureGolden<T>(
  key: string,
  description: Record<string, unknown>,
  build: (snapshotDir: string) => Promise<T>,
  signal?: AbortSignal,
): Promise<{ entry: GoldenEntry; built: T | undefined }> {
  const found = await findGolden(key)
  if (found) return { entry: found, built: undefined }
  const root = await cacheSubdir('golden')
  return withFileLock(
    join(root, `${key}.lock`),
    async () => {
      const again = await findGolden(key)
      if (again) return { entry: again, built: undefined }
      const dir = entryDir(root, key)
      await rm(dir, { recursive: true, force: true })
      await mkdir(dir, { mode: 0o700 })
      const started = Date.now()
      const snapshotDir = join(dir, 'snapshot')
      try {
        const built = await build(snapshotDir)
        const record: GoldenRecord = { key, description, createdAt: new Date().toISOString(), buildMs: Date.now() - started }
        await writeFile(join(dir, doneMarker), JSON.stringify(record, null, 2), { mode: 0o600 })
        return { entry: { key, snapshotDir }, built }
      } catch (error) {
        await rm(dir, { recursive: true, force: true })
        throw error
      }
    },
    signal,
  )
}

/** Forgets an entry that turned out unusable (damaged files, another QEMU), so the next use rebuilds it. */
export async function discardGolden(key: string): Promise<void> {
  const root = await cacheSubdir('golden')
  await withFileLock(join(root, `${key}.lock`), () => rm(entryDir(root, key), { recursive: true, force: true }))
}
