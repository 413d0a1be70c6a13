import { readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises'
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

describe('cachedBuild on an entry restored in part or from elsewhere', () => {
  useTemporaryCache('test')
  const build = (kernel: string) => async (dir: string) => {
    await writeFile(join(dir, 'vmlinuz'), kernel)
    await writeFile(join(dir, 'disk.qcow2'), Buffer.alloc(64 * 1024, 7))
    return { kernelRelease: kernel }
  }

  async function reuse(key: string, kernel = 'kernel-6.1') {
    const lines: string[] = []
    const result = await cachedBuild('images', key, build(kernel), undefined, (line) => lines.push(line))
    return { ...result, lines }
  }

  it('records every file and uses a whole entry as it is', async () => {
    const { dir } = await reuse('whole')
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { entry: string; files: Record<string, { bytes: number }> }
    expect(manifest.entry).toBe('whole')
    expect(manifest.files).toMatchObject({ vmlinuz: { bytes: 10 }, 'disk.qcow2': { bytes: 65536 } })
    expect(await reuse('whole')).toMatchObject({ built: false, lines: [] })
  })

  it('rebuilds an entry with a short file, saying so', async () => {
    const { dir } = await reuse('short')
    await truncate(join(dir, 'disk.qcow2'), 1000)
    const again = await reuse('short')
    expect(again.built).toBe(true)
    expect(again.lines).toEqual(['cached images entry short is unusable (disk.qcow2 is 1000 bytes, 65536 when built); building it again'])
    expect((await readFile(join(dir, 'disk.qcow2'))).length).toBe(65536)
  })

  it('rebuilds an entry with a file missing', async () => {
    const { dir } = await reuse('missing')
    await rm(join(dir, 'vmlinuz'))
    expect((await reuse('missing')).lines).toEqual(['cached images entry missing is unusable (vmlinuz is missing); building it again'])
  })

  it('rebuilds an entry whose file is another of the same size (a kernel from another build)', async () => {
    const { dir } = await reuse('other-kernel')
    await writeFile(join(dir, 'vmlinuz'), 'kernel-6.9')
    const again = await reuse('other-kernel')
    expect(again.lines).toEqual(['cached images entry other-kernel is unusable (vmlinuz is not the file that was built (sha256 differs)); building it again'])
    expect(await readFile(join(dir, 'vmlinuz'), 'utf8')).toBe('kernel-6.1')
  })

  it("rebuilds an entry whose manifest is another entry's, or records no files", async () => {
    const { dir } = await reuse('mine')
    const { dir: theirs } = await reuse('theirs')
    await writeFile(join(dir, 'manifest.json'), await readFile(join(theirs, 'manifest.json')))
    expect((await reuse('mine')).lines).toEqual(['cached images entry mine is unusable (its manifest is that of entry theirs); building it again'])
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ kernelRelease: 'kernel-6.1' }))
    expect((await reuse('mine')).lines).toEqual(['cached images entry mine is unusable (its manifest records no file sizes (built by an older vmharness)); building it again'])
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
