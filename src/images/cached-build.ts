import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cacheSubdir } from '../host/cache-dir.js'
import { markUsed } from '../host/cache-entries.js'
import { withFileLock } from '../host/file-lock.js'

const manifestName = 'manifest.json'

/**
 * Returns the cache entry `<kind>/<key>`, building it first if needed. The build writes into a
 * private temp dir that is renamed into place only when complete (with its manifest last), under
 * a lock, so parallel workers never build twice and never see half an entry.
 */
export async function cachedBuild<M>(
  kind: string,
  key: string,
  build: (workDir: string) => Promise<M>,
  signal?: AbortSignal,
): Promise<{ dir: string; manifest: M; built: boolean }> {
  const root = await cacheSubdir(kind)
  const dir = join(root, key)
  const ready = await readManifest<M>(dir)
  if (ready) {
    await markUsed(dir, 'images')
    return { dir, manifest: ready, built: false }
  }
  return withFileLock(
    join(root, `${key}.lock`),
    async () => {
      const again = await readManifest<M>(dir)
      if (again) return { dir, manifest: again, built: false }
      const workDir = join(root, `.tmp-${key}-${randomBytes(4).toString('hex')}`)
      await mkdir(workDir, { mode: 0o700 })
      try {
        const manifest = await build(workDir)
        await writeFile(join(workDir, manifestName), JSON.stringify(manifest, null, 2))
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

async function readManifest<M>(dir: string): Promise<M | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, manifestName), 'utf8')) as M
  } catch {
    return undefined
  }
}
