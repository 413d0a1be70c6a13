import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest'

/** Points VMHARNESS_CACHE at a fresh directory (per test, or per file) and puts it back afterwards; returns the current path. */
export function useTemporaryCache(per: 'test' | 'file'): () => string {
  let cache = ''
  const previous = process.env.VMHARNESS_CACHE
  const [before, after] = per === 'test' ? [beforeEach, afterEach] : [beforeAll, afterAll]
  before(async () => {
    cache = await mkdtemp(join(tmpdir(), 'vmharness-cache-'))
    process.env.VMHARNESS_CACHE = cache
  })
  after(async () => {
    if (previous === undefined) delete process.env.VMHARNESS_CACHE
    else process.env.VMHARNESS_CACHE = previous
    await rm(cache, { recursive: true, force: true })
  })
  return () => cache
}
