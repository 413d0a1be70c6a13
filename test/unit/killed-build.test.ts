import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { listCacheEntries, pruneCache } from '../../src/host/cache-entries.js'
import { cachedBuild } from '../../src/images/cached-build.js'
import { ensureGolden } from '../../src/snapshots/golden-store.js'
import { useTemporaryCache } from '../helpers/temporary-cache.js'

// The killed builder is a separate Node process running the built library (dist/, made by
// `npm ci`), killed with SIGKILL in the middle of writing its entry.
const dist = resolve('dist/src')

async function killMidBuild(cache: string, body: string): Promise<void> {
  if (!existsSync(join(dist, 'images/cached-build.js'))) throw new Error(`${dist} is not built: run npm run build (npm ci does it)`)
  const child = execa('node', ['--input-type=module', '-e', body], { env: { VMHARNESS_CACHE: cache }, reject: false })
  const halfWritten = new Promise<void>((resolvePromise) => child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('half written') && resolvePromise()))
  await Promise.race([
    halfWritten,
    child.then((result) => {
      throw new Error(`the builder ended before it was killed: ${result.stderr}`)
    }),
  ])
  child.kill('SIGKILL')
  await child
}

describe('a cache entry half-written by a killed build', () => {
  const cache = useTemporaryCache('test')

  it('is never used: the next build takes over the dead lock and builds whole, and pruning removes the remains', async () => {
    await killMidBuild(
      cache(),
      `import { cachedBuild } from '${dist}/images/cached-build.js'
       import { writeFileSync } from 'node:fs'
       await cachedBuild('images', 'tiny-k', async (dir) => { writeFileSync(dir + '/disk.qcow2', 'half'); process.stdout.write('half written\\n'); await new Promise(() => {}) })`,
    )
    let builds = 0
    const { dir, built } = await cachedBuild('images', 'tiny-k', async (work) => {
      builds++
      await writeFile(join(work, 'disk.qcow2'), 'whole')
      return { whole: true }
    })
    expect(built).toBe(true)
    expect(builds).toBe(1)
    expect(await readFile(join(dir, 'disk.qcow2'), 'utf8')).toBe('whole')
    const leftovers = (await listCacheEntries()).filter((entry) => !entry.complete)
    expect(leftovers).toHaveLength(1)
    const old = new Date(Date.now() - 2 * 3_600_000)
    await utimes(leftovers[0]?.dir as string, old, old)
    await pruneCache(new Date(0))
    expect(await readdir(join(cache(), 'images'))).toEqual(['tiny-k'])
  })

  it('a golden snapshot cut off mid-build is rebuilt, never handed out', async () => {
    await killMidBuild(
      cache(),
      `import { ensureGolden } from '${dist}/snapshots/golden-store.js'
       import { mkdirSync, writeFileSync } from 'node:fs'
       await ensureGolden('g-key', {}, async (dir) => { mkdirSync(dir); writeFileSync(dir + '/state.bin', 'half'); process.stdout.write('half written\\n'); await new Promise(() => {}) })`,
    )
    let builds = 0
    const { entry, built } = await ensureGolden('g-key', {}, async (dir) => {
      builds++
      await mkdir(dir)
      await writeFile(join(dir, 'state.bin'), 'whole')
      return 'rebuilt'
    })
    expect(builds).toBe(1)
    expect(built).toBe('rebuilt')
    expect(await readFile(join(entry.snapshotDir, 'state.bin'), 'utf8')).toBe('whole')
  })
})
