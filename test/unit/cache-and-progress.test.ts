import { mkdir, open, readdir, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { cachedBuild } from '../../src/images/cached-build.js'
import { listCacheEntries, pruneCache } from '../../src/host/cache-entries.js'
import { imagesCommand, parseSize } from '../../src/cli/images-command.js'
import { progressReporter } from '../../src/machine/progress.js'
import { ensureGolden } from '../../src/snapshots/golden-store.js'
import { useTemporaryCache } from '../helpers/temporary-cache.js'

describe('the cache listing and pruning behind `vmharness images`', () => {
  const cache = useTemporaryCache('test')

  it('lists images and golden snapshots with their real disk usage, and prunes what was not used lately', async () => {
    await cachedBuild('images', 'old-image', async (dir) => (await writeFile(join(dir, 'disk'), Buffer.alloc(200_000, 1)), { n: 1 }))
    await cachedBuild('images', 'fresh-image', async (dir) => (await writeFile(join(dir, 'disk'), 'x'), { n: 2 }))
    await ensureGolden('old-golden', {}, async (dir) => mkdir(dir))
    const monthAgo = new Date(Date.now() - 30 * 86_400_000)
    await utimes(join(cache(), 'images', 'old-image', 'manifest.json'), monthAgo, monthAgo)
    await utimes(join(cache(), 'golden', 'old-golden', 'golden.json'), monthAgo, monthAgo)
    // Using an entry again makes it recent: the old golden snapshot is found, so it stays.
    await ensureGolden('old-golden', {}, async () => expect.unreachable('already built'))

    const entries = await listCacheEntries()
    expect(entries.map((entry) => `${entry.kind}/${entry.key}`).sort()).toEqual(['golden/old-golden', 'images/fresh-image', 'images/old-image'])
    expect(entries.find((entry) => entry.key === 'old-image')?.bytes).toBeGreaterThanOrEqual(200_000)

    const removed = await pruneCache(new Date(Date.now() - 14 * 86_400_000))
    expect(removed.map((entry) => entry.key)).toEqual(['old-image'])
    expect(await readdir(join(cache(), 'images'))).toEqual(['fresh-image'])
    expect(await readdir(join(cache(), 'golden'))).toEqual(['old-golden'])
  })

  it('prunes a half-built entry once it is an hour old, and everything with --all', async () => {
    const halfBuilt = join(cache(), 'images', '.tmp-debian-abc-1234')
    await mkdir(halfBuilt, { recursive: true })
    await writeFile(join(halfBuilt, 'disk.raw'), 'partial')
    expect((await listCacheEntries())[0]).toMatchObject({ complete: false })
    expect(await pruneCache(new Date(0))).toEqual([])
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000)
    await utimes(halfBuilt, twoHoursAgo, twoHoursAgo)
    expect((await pruneCache(new Date(0))).map((entry) => entry.key)).toEqual(['.tmp-debian-abc-1234'])
    await cachedBuild('images', 'kept-until-all', async () => ({}))
    expect((await pruneCache(undefined)).map((entry) => entry.key)).toEqual(['kept-until-all'])
    expect(await listCacheEntries()).toEqual([])
  })
})

describe('pruning the cache down to a size', () => {
  const cache = useTemporaryCache('test')
  const MiB = 1024 * 1024

  /** An image entry of `mib` MiB (real blocks, not a sparse file) last used `daysAgo` days ago. */
  async function entry(key: string, mib: number, daysAgo: number): Promise<void> {
    await cachedBuild('images', key, async (dir) => (await writeFile(join(dir, 'disk'), Buffer.alloc(mib * MiB, 1)), {}))
    const when = new Date(Date.now() - daysAgo * 86_400_000)
    await utimes(join(cache(), 'images', key, 'manifest.json'), when, when)
  }

  it('removes the least recently used first, only until the cache fits, whatever their age', async () => {
    await entry('oldest', 2, 3)
    await entry('older', 2, 2)
    await entry('newest', 2, 0)
    const removed = await pruneCache(null, { maxBytes: 3 * MiB })
    expect(removed.map((each) => each.key)).toEqual(['oldest', 'older'])
    expect(await readdir(join(cache(), 'images'))).toEqual(['newest'])
    expect(await pruneCache(null, { maxBytes: 3 * MiB })).toEqual([])
  })

  it('never removes an entry a process has a file open in (a running VM on its disk), and takes the next instead', async () => {
    await entry('in-use', 2, 5)
    await entry('idle', 2, 1)
    await entry('recent', 2, 0)
    const held = await open(join(cache(), 'images', 'in-use', 'disk'), 'r')
    try {
      const removed = await pruneCache(null, { maxBytes: 5 * MiB })
      expect(removed.map((each) => each.key)).toEqual(['idle'])
      expect((await readdir(join(cache(), 'images'))).sort()).toEqual(['in-use', 'recent'])
    } finally {
      await held.close()
    }
  })

  it('vmharness images prune --max-size takes sizes with units, and with --older-than applies both', async () => {
    expect([parseSize('20G'), parseSize('512M'), parseSize('1.5GiB'), parseSize('800k'), parseSize('4096'), parseSize('20X'), parseSize(undefined)]).toEqual([
      20 * 1024 ** 3, 512 * MiB, 1.5 * 1024 ** 3, 800 * 1024, 4096, undefined, undefined,
    ])
    await entry('month-old', 1, 30)
    await entry('week-old', 2, 7)
    await entry('today', 2, 0)
    let out = ''
    expect(await imagesCommand(['prune', '--max-size', '3M', '--older-than', '14'], (text) => (out += text))).toBe(0)
    expect(out).toMatch(/^removed images month-old .*\nremoved images week-old .*\nfreed .* \(entries unused since \d{4}-\d\d-\d\d; least recently used first, down to 3\.0 MiB\)\n$/)
    expect(await readdir(join(cache(), 'images'))).toEqual(['today'])
    expect(await imagesCommand(['prune', '--max-size', 'lots'], () => undefined)).toBe(2)
  })
})

describe('progress lines', () => {
  function sink(isTTY: boolean) {
    let written = ''
    const stream = Object.assign(new Writable({ write: (chunk, _encoding, done) => ((written += String(chunk)), done()) }), { isTTY, columns: 40 })
    return { stream, text: () => written }
  }

  it('rewrite one line in place on a terminal, cut to its width', async () => {
    const { stream, text } = sink(true)
    const report = progressReporter(stream, '')
    report('booting (5 s)')
    report('booting a guest with a very long name indeed (10 s)')
    report.done()
    await new Promise((resolve) => setImmediate(resolve))
    const segments = text().split('\r\x1b[K')
    expect(segments).toEqual(['', 'booting (5 s)', expect.stringMatching(/^booting a guest with a very long.*…\n$/)])
    expect(segments[2]?.trimEnd()).toHaveLength(39)
  })

  it('print plain lines elsewhere, and a tick that changes only numbers not more than every 15 s', async () => {
    const { stream, text } = sink(false)
    const report = progressReporter(stream, 'vmharness: ')
    report('booting: connecting SSH (5 s)')
    report('booting: connecting SSH (10 s)')
    report('booting: SSH connected (12 s)')
    report.done()
    await new Promise((resolve) => setImmediate(resolve))
    expect(text()).toBe('vmharness: booting: connecting SSH (5 s)\nvmharness: booting: SSH connected (12 s)\n')
  })
})

describe('vmharness images (the command)', () => {
  const cache = useTemporaryCache('test')
  const cli = (...args: string[]) => execa('node', ['dist/src/cli/main.js', 'images', ...args], { env: { VMHARNESS_CACHE: cache() }, reject: false })

  it('lists entries with sizes and a total, prunes them, and explains its usage', async () => {
    await cachedBuild('images', 'tiny-abc', async (dir) => (await writeFile(join(dir, 'disk.qcow2'), Buffer.alloc(300_000, 1)), { kernelRelease: '6.1.0-test' }))
    const listed = await cli()
    expect(listed.exitCode).toBe(0)
    expect(listed.stdout).toMatch(/images\s+\d+(\.\d)? KiB\s+used 0 min ago\s+tiny-abc\s+kernel 6\.1\.0-test/)
    expect(listed.stdout).toMatch(/total \d+(\.\d)? KiB in 1 entries/)
    const pruned = await cli('prune', '--all')
    expect(pruned.stdout).toContain('removed images tiny-abc')
    expect((await cli()).stdout).toContain('(empty)')
    const wrong = await cli('prune', '--older-than', 'soon')
    expect(wrong.exitCode).toBe(2)
    expect(wrong.stdout).toContain('usage: vmharness images')
  })
})
