import { createHash, randomBytes } from 'node:crypto'
import { readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cacheSubdir } from './cache-dir.js'
import { fileSha256 } from '../common/content-hash.js'
import { PromiseCache } from '../common/promise-cache.js'

const inProcess = new PromiseCache<string, string>()

/**
 * sha256 of a file's bytes, remembered by the file's identity (path, device, inode, size, mtime,
 * ctime) in a small sidecar file in the cache, so a 500 MB disk image is read once, not on every
 * run. Rewriting or replacing the file changes its identity, and the next call hashes it again.
 */
export async function memoizedFileSha256(path: string): Promise<string> {
  const info = await stat(path, { bigint: true })
  const identity = [path, info.dev, info.ino, info.size, info.mtimeNs, info.ctimeNs].join('\0')
  return inProcess.get(identity, () => fromSidecar(identity, path))
}

async function fromSidecar(identity: string, path: string): Promise<string> {
  const sidecar = join(await cacheSubdir('file-digests'), createHash('sha256').update(identity).digest('hex').slice(0, 32))
  const remembered = (await readFile(sidecar, 'utf8').catch(() => '')).trim()
  if (/^[0-9a-f]{64}$/.test(remembered)) return remembered
  const digest = await fileSha256(path)
  // temp + rename: a parallel worker reads either nothing or the whole digest.
  const temp = `${sidecar}.tmp-${randomBytes(4).toString('hex')}`
  await writeFile(temp, `${digest}\n`, { mode: 0o600 })
  await rename(temp, sidecar)
  return digest
}
