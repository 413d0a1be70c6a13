import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useTemporaryCache } from '../helpers/temporary-cache.js'
import { ContentHash } from '../../src/common/content-hash.js'
import { cachedBuild } from '../../src/images/cached-build.js'

describe('cachedBuild', () => {
  const cacheDir = useTemporaryCache('test')

  it('builds once when many callers ask for the same key at the same time', async () => {
    let builds = 0
    const build = async (dir: string) => {
      builds++
      await new Promise((resolve) => setTimeout(resolve, 50))
      await writeFile(join(dir, 'artefact'), 'content')
      return { version: 1 }
    }
    const results = await Promise.all(Array.from({ length: 5 }, () => cachedBuild('things', 'k1', build)))
    expect(builds).toBe(1)
    expect(results.filter((result) => result.built)).toHaveLength(1)
    expect(await readFile(join(results[0]!.dir, 'artefact'), 'utf8')).toBe('content')
    expect((await cachedBuild('things', 'k1', build)).built).toBe(false)
  })

  it('leaves nothing behind when a build fails, and builds again next time', async () => {
    await expect(cachedBuild('things', 'k2', async () => Promise.reject(new Error('broken recipe')))).rejects.toThrow('broken recipe')
    expect(await readdir(join(cacheDir(), 'things'))).toEqual([])
    const again = await cachedBuild('things', 'k2', async () => ({ ok: true }))
    expect(again).toMatchObject({ built: true, manifest: { ok: true } })
  })

  it('never returns an entry without its manifest (a build killed half-way)', async () => {
    const { dir } = await cachedBuild('things', 'k3', async () => ({ n: 1 }))
    await rm(join(dir, 'manifest.json'))
    expect((await cachedBuild('things', 'k3', async () => ({ n: 2 }))).manifest).toEqual({ n: 2 })
  })
})

describe('ContentHash', () => {
  it('changes when any part changes, and when bytes move between parts', () => {
    const base = new ContentHash().text('a', 'xy').text('b', 'z').digest()
    expect(new ContentHash().text('a', 'xy').text('b', 'z').digest()).toBe(base)
    expect(new ContentHash().text('a', 'x').text('b', 'yz').digest()).not.toBe(base)
    expect(new ContentHash().text('a', 'xy').text('b', 'Z').digest()).not.toBe(base)
  })
})
