import { describe, expect, it } from 'vitest'
import { PromiseCache } from '../../src/common/promise-cache.js'

describe('PromiseCache', () => {
  it('runs the work once per key, for callers at the same time and later', async () => {
    const cache = new PromiseCache<string, number>()
    let runs = 0
    const work = async () => ++runs
    expect(await Promise.all([cache.get('a', work), cache.get('a', work)])).toEqual([1, 1])
    expect(await cache.get('a', work)).toBe(1)
    expect(await cache.get('b', work)).toBe(2)
    expect(runs).toBe(2)
  })

  it('forgets a rejected promise, so the next call tries again', async () => {
    const cache = new PromiseCache<string, string>()
    await expect(cache.get('k', () => Promise.reject(new Error('first')))).rejects.toThrow('first')
    expect(await cache.get('k', async () => 'second')).toBe('second')
  })
})
