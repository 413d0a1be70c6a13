import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { fileSha256 } from '../common/content-hash.js'
import { cacheSubdir } from '../host/cache-dir.js'
import { markUsed } from '../host/cache-entries.js'
import { memoizedFileSha256 } from '../host/file-digest.js'
import { withFileLock } from '../host/file-lock.js'

const manifestName = 'manifest.json'

/** What cachedBuild adds to a manifest: the entry it belongs to and each file's size and sha256, to check the entry on use. */
export interface EntryRecord {
  entry: string
  files: Record<string, { bytes: number; sha256: string }>
}

/**
 * Returns the cache entry `<kind>/<key>`, building it first if needed. The build writes into a
 * private temp dir that is renamed into place only when complete (with its manifest last), under
 * a lock, so parallel workers never build twice and never see half an entry.
 *
 * The manifest records every file's size and sha256, and an entry is checked against it on
 * use: one with a file missing, short or changed (a half-restored CI cache, a file from another
 * build), or whose manifest names another entry, is built again, and `onProgress` says why.
 * The hashes are remembered per file version (memoizedFileSha256), so a check reads each file
 * once, not on every run, and a golden key computed from the same files reads nothing more.
 */
export async function cachedBuild<M>(
  kind: string,
  key: string,
  build: (workDir: string) => Promise<M>,
  signal?: AbortSignal,
  onProgress?: (line: string) => void,
): Promise<{ dir: string; manifest: M; built: boolean }> {
  const root = await cacheSubdir(kind)
  const dir = join(root, key)
  const ready = await readManifest<M>(dir)
  if (ready && (await entryDamage(dir, key, ready)) === undefined) {
    await markUsed(dir, 'images')
    return { dir, manifest: ready, built: false }
  }
  return withFileLock(
    join(root, `${key}.lock`),
    async () => {
      const again = await readManifest<M>(dir)
      if (again) {
        const damage = await entryDamage(dir, key, again)
        if (damage === undefined) return { dir, manifest: again, built: false }
        onProgress?.(`cached ${kind} entry ${key} is unusable (${damage}); building it again`)
      }
      const workDir = join(root, `.tmp-${key}-${randomBytes(4).toString('hex')}`)
      await mkdir(workDir, { mode: 0o700 })
      try {
        const manifest = await build(workDir)
        const record: EntryRecord = { entry: key, files: await fileRecords(workDir) }
        await writeFile(join(workDir, manifestName), JSON.stringify({ ...manifest, ...record }, null, 2))
        await rm(dir, { recursive: true, force: true })
        await rename(workDir, dir)
        return { dir, manifest, built: true }
      } catch (error) {
        await rm(workDir, { recursive: true, force: true })
        throw error
      }
    },
    signal,
  )
}

async function readManifest<M>(dir: string): Promise<(M & Partial<EntryRecord>) | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, manifestName), 'utf8')) as M & Partial<EntryRecord>
  } catch {
    return undefined
  }
}

/** Why the entry in `dir` cannot be used as it is, or undefined when every file is as recorded. */
export async function entryDamage(dir: string, key: string, manifest: Partial<EntryRecord>): Promise<string | undefined> {
  if (!manifest.files || typeof manifest.files !== 'object') return 'its manifest records no file sizes (built by an older vmharness)'
  if (manifest.entry !== key) return `its manifest is that of entry ${String(manifest.entry)}`
  for (const [name, recorded] of Object.entries(manifest.files)) {
    const path = join(dir, name)
    const info = await stat(path).catch(() => undefined)
    if (!info?.isFile()) return `${name} is missing`
    if (info.size !== recorded.bytes) return `${name} is ${info.size} bytes, ${recorded.bytes} when built`
    if ((await memoizedFileSha256(path)) !== recorded.sha256) return `${name} is not the file that was built (sha256 differs)`
  }
  return undefined
}

async function fileRecords(dir: string): Promise<EntryRecord['files']> {
  const files: EntryRecord['files'] = {}
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  for (const entry of entries.filter((each) => each.isFile()).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(entry.parentPath, entry.name)
    files[relative(dir, path)] = { bytes: (await stat(path)).size, sha256: await fileSha256(path) }
  }
  return files
}
