import { mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { useTemporaryCache } from '../helpers/temporary-cache.js'
import { discardGolden, ensureGolden, findGolden } from '../../src/snapshots/golden-store.js'

const cacheDir = useTemporaryCache('file')

describe('golden snapshot store', () => {
  it('builds once even when asked twice at the same time, then finds it', async () => {
    let builds = 0
    const build = async (snapshotDir: string) => {
      builds++
      await mkdir(snapshotDir)
      return 'built'
    }
    const [a, b] = await Promise.all([ensureGolden('k1', {}, build), ensureGolden('k1', {}, build)])
    expect(builds).toBe(1)
    expect([a.built, b.built].sort()).toEqual(['built', undefined])
    expect(await findGolden('k1')).toEqual({ key: 'k1', snapshotDir: join(cacheDir(), 'golden', 'k1', 'snapshot') })
  })

  it('never uses an entry a killed build left half written, and a failed build leaves nothing', async () => {
    await mkdir(join(cacheDir(), 'golden', 'k2', 'snapshot'), { recursive: true })
    expect(await findGolden('k2')).toBeUndefined()
    await expect(ensureGolden('k2', {}, () => Promise.reject(new Error('boot failed')))).rejects.toThrow('boot failed')
    expect(await readdir(join(cacheDir(), 'golden'))).not.toContain('k2')
    const again = await ensureGolden('k2', {}, async (dir) => mkdir(dir).then(() => 'second'))
    expect(again.built).toBe('second')
    await discardGolden('k2')
    expect(await findGolden('k2')).toBeUndefined()
  })
})
