import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { acquireFileLock, withFileLock } from '../../src/host/file-lock.js'

// Each contender starts a flock process: on a loaded 2-core host two dozen of them take longer
// than vitest's default 5 s, which says nothing about the lock.
describe('withFileLock', { timeout: 30_000 }, () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmharness-lock-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('lets one of many contenders in at a time, and every one gets its turn', async () => {
    const lock = join(dir, 'entry.lock')
    const counter = join(dir, 'counter')
    await writeFile(counter, '0')
    let inside = 0
    let most = 0
    const contenders = 24
    await Promise.all(
      Array.from({ length: contenders }, () =>
        withFileLock(lock, async () => {
          most = Math.max(most, ++inside)
          // A read-modify-write that loses updates unless the lock really excludes.
          const value = Number(await readFile(counter, 'utf8'))
          await sleep(2)
          await writeFile(counter, String(value + 1))
          inside--
        }),
      ),
    )
    expect(most).toBe(1)
    expect(await readFile(counter, 'utf8')).toBe(String(contenders))
    // Removed at each release while still locked; a waiter that then got the removed file tried again.
    expect(existsSync(lock)).toBe(false)
  })

  it('is released by the kernel when its holder is SIGKILLed, and only one of the waiters then takes it', async () => {
    const lock = join(dir, 'entry.lock')
    // Another process holds the lock, as a worker would, then dies without a word.
    // (--close: the lock is flock's own, not also its sleeping child's.)
    const holder = execa('flock', ['--exclusive', '--close', lock, 'sleep', '600'], { reject: false, stdio: 'ignore', detached: true })
    // Held once a non-blocking attempt fails.
    while ((await execa('flock', ['--nonblock', lock, 'true'], { reject: false })).exitCode === 0) await sleep(10)
    let inside = 0
    let most = 0
    let done = 0
    const waiters = Array.from({ length: 8 }, () =>
      withFileLock(lock, async () => {
        most = Math.max(most, ++inside)
        await sleep(20)
        inside--
        done++
      }),
    )
    // Nothing gets past a held lock, however long the waiters wait.
    await sleep(300)
    expect(done).toBe(0)
    holder.kill('SIGKILL')
    await holder
    await Promise.all(waiters)
    // flock's child, which never held the lock.
    process.kill(-(holder.pid as number), 'SIGKILL')
    expect(done).toBe(8)
    expect(most).toBe(1)
  })

  it('a lock file left by a dead holder lets exactly one contender in at a time', async () => {
    const lock = join(dir, 'entry.lock')
    // What a killed process left: a lock file naming a pid that no longer runs.
    await writeFile(lock, '999999')
    let inside = 0
    let most = 0
    await Promise.all(
      Array.from({ length: 16 }, () =>
        withFileLock(lock, async () => {
          most = Math.max(most, ++inside)
          await sleep(30)
          inside--
        }),
      ),
    )
    expect(most).toBe(1)
  })

  it('gives the lock back when the work throws, and a waiter can be aborted', async () => {
    const lock = join(dir, 'entry.lock')
    await expect(withFileLock(lock, async () => Promise.reject(new Error('build failed')))).rejects.toThrow('build failed')
    const release = await acquireFileLock(lock)
    const controller = new AbortController()
    const waiting = withFileLock(lock, async () => 'never', controller.signal)
    await sleep(100)
    controller.abort(new Error('given up'))
    await expect(waiting).rejects.toThrow('given up')
    await release()
    expect(await withFileLock(lock, async () => 'after')).toBe('after')
  })

  it('says what is wrong when the lock cannot be made', async () => {
    await expect(withFileLock(join(dir, 'no-such-dir', 'x.lock'), async () => 'never')).rejects.toThrow(/could not lock .*no-such-dir/)
  })
})
