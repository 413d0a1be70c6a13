import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { packageRoot } from './package-root.js'
import { PromiseCache } from './promise-cache.js'

const digests = new PromiseCache<'harness', string>()

/**
 * A content hash of the harness code that is running (its `src/` tree, as TypeScript or as the
 * built JavaScript) and of the image recipes in `images/`: what shapes a guest's saved state, so
 * that a golden snapshot saved by other code is never loaded. Computed once per process.
 */
export function harnessCodeDigest(): Promise<string> {
  return digests.get('harness', () => treeDigest([dirname(dirname(fileURLToPath(import.meta.url))), join(packageRoot(), 'images')]))
}

/** sha256 over every file's path (relative to its root) and bytes, in a fixed order; type declarations and source maps left out. */
export async function treeDigest(roots: string[]): Promise<string> {
  const hash = createHash('sha256')
  for (const [index, root] of roots.entries()) {
    const files = (await readdir(root, { recursive: true, withFileTypes: true }))
      .filter((entry) => entry.isFile() && !/\.d\.ts$|\.map$/.test(entry.name))
      .map((entry) => join(entry.parentPath ?? entry.path, entry.name))
      .sort()
    for (const file of files) {
      const name = `${index}/${relative(root, file)}`
      const bytes = await readFile(file)
      hash.update(`${name}\0${bytes.length}\0`).update(bytes).update('\0')
    }
  }
  return hash.digest('hex')
}
