import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cacheCommand, declarationsIn } from '../../src/cli/cache-command.js'
import { suiteCacheKey } from '../../src/machine/suite-cache-key.js'
import { useTemporaryCache } from '../helpers/temporary-cache.js'

useTemporaryCache('file')
let dir: string
let count = 0

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vmharness-cache-key-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** `vmharness cache key` over a module with this source, as a CI step runs it. */
async function keyOf(source: string): Promise<string> {
  const module = join(dir, `machines-${++count}.mjs`)
  await writeFile(module, source)
  let out = ''
  expect(await cacheCommand(['key', module], (text) => (out += text))).toBe(0)
  expect(out).toMatch(/^[0-9a-f]{20}\n$/)
  return out.trim()
}

const base = `export const suite = { machines: { web: { image: 'tiny', memory: 256, setup: async (vm) => { await vm.succeed('touch /srv/a') } } } }\n`

describe('vmharness cache key', () => {
  it('is the same for the same declarations, whatever the machine is called or the order of the modules', async () => {
    const key = await keyOf(base)
    expect(await keyOf(base)).toBe(key)
    expect(await keyOf(base.replace('web:', 'www:'))).toBe(key)
  })

  it('changes with each golden input: setup source, setupKey, the spec, the networks', async () => {
    const key = await keyOf(base)
    const changed = [
      base.replace('touch /srv/a', 'touch /srv/b'),
      base.replace("image: 'tiny',", "image: 'tiny', setupKey: 'v2',"),
      base.replace('memory: 256', 'memory: 320'),
      base.replace('} } }\n', "}, db: { image: 'tiny' } }, networks: {} }\n"),
      base.replace('} } }\n', "}, db: { image: 'tiny' } }, networks: { lan: ['web', 'db'] } }\n"),
    ]
    const keys = await Promise.all(changed.map((source) => keyOf(source)))
    expect(new Set([key, ...keys]).size).toBe(changed.length + 1)
  })

  it("changes with an image recipe's inputs, the spec unchanged: the Debian mirror the image is built from", async () => {
    const source = base.replace("image: 'tiny'", "image: { name: 'debian', packages: ['nginx'] }")
    const previous = process.env.VMHARNESS_DEBIAN_MIRROR
    try {
      process.env.VMHARNESS_DEBIAN_MIRROR = 'http://mirror.example/debian'
      const one = await keyOf(source)
      expect(await keyOf(source)).toBe(one)
      process.env.VMHARNESS_DEBIAN_MIRROR = 'http://other-mirror.example/debian'
      expect(await keyOf(source)).not.toBe(one)
    } finally {
      if (previous === undefined) delete process.env.VMHARNESS_DEBIAN_MIRROR
      else process.env.VMHARNESS_DEBIAN_MIRROR = previous
    }
  })

  it("changes with the content of a user's own image file, not its path", async () => {
    const disk = join(dir, 'disk.qcow2')
    const source = base.replace("image: 'tiny'", `image: { disk: ${JSON.stringify(disk)} }`)
    await writeFile(disk, 'one')
    const one = await keyOf(source)
    await writeFile(disk, 'two')
    expect(await keyOf(source)).not.toBe(one)
  })

  it('names each machine with --explain, and refuses a module without declarations', async () => {
    const module = join(dir, 'explained.mjs')
    await writeFile(module, base)
    let out = ''
    expect(await cacheCommand(['key', '--explain', module], (text) => (out += text))).toBe(0)
    expect(out).toMatch(/^# web tiny [0-9a-f]{20}\n[0-9a-f]{20}\n$/)
    const empty = join(dir, 'empty.mjs')
    await writeFile(empty, 'export const test = () => {}\n')
    out = ''
    expect(await cacheCommand(['key', empty], (text) => (out += text))).toBe(1)
    expect(out).toContain('exports no { machines }')
    expect(await cacheCommand(['key'], () => undefined)).toBe(2)
  })

  it('takes the options object a suite gives vmTest, and finds nothing in other exports', () => {
    const options = { machines: { web: { image: 'tiny' } } }
    expect(declarationsIn({ options, test: () => undefined, n: 3, nothing: null })).toEqual([options])
  })

  it('adds up several suites: another suite changes the key', async () => {
    const one = await suiteCacheKey([{ machines: { web: { image: 'tiny' } } }])
    const two = await suiteCacheKey([{ machines: { web: { image: 'tiny' } } }, { machines: { db: { image: 'tiny', memory: 300 } } }])
    expect(two.key).not.toBe(one.key)
    expect(two.machines).toHaveLength(2)
  })
})
