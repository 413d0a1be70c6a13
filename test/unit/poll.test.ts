import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { WaitTimeoutError } from '../../src/errors.js'
import { pollUntil } from '../../src/machine/poll.js'
import { shellQuote } from '../../src/ssh/shell-quote.js'

describe('pollUntil', () => {
  it('returns the value of the first attempt that is done', async () => {
    let calls = 0
    const value = await pollUntil('three calls', 'vm', async () => (++calls === 3 ? { done: true, value: 'ok' } : { done: false, seen: `call ${calls}` }), { timeoutMs: 5_000, intervalMs: 1 })
    expect(value).toBe('ok')
    expect(calls).toBe(3)
  })

  it('fails at the timeout with what the last attempt saw', async () => {
    let calls = 0
    const error = await pollUntil('never', 'web', async () => ({ done: false, seen: `exit 1: attempt ${++calls}` }), { timeoutMs: 200, intervalMs: 20 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(WaitTimeoutError)
    const timeout = error as WaitTimeoutError
    expect(timeout.lastSeen).toBe(`exit 1: attempt ${calls}`)
    expect(timeout.message).toMatch(/^vm 'web': gave up after 0\.\d s \(\d+ attempts\) waiting for never/)
    expect(timeout.waitedMs).toBeGreaterThanOrEqual(200)
  })

  it("ends with the caller's abort reason, not a timeout", async () => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('test cancelled')), 50)
    const error = await pollUntil('never', 'vm', async () => ({ done: false, seen: '' }), { timeoutMs: 10_000, intervalMs: 10, signal: controller.signal }).catch((e: unknown) => e)
    expect((error as Error).message).toBe('test cancelled')
  })

  it('passes on an error an attempt throws', async () => {
    await expect(pollUntil('x', 'vm', async () => Promise.reject(new RangeError('unit failed')), { timeoutMs: 1_000 })).rejects.toThrow(RangeError)
  })
})

describe('shellQuote', () => {
  it('keeps quotes, spaces and substitutions literal through a real sh -c', async () => {
    for (const word of ["it's", '$(echo no)', '`echo no`', 'a  b', '"x"; echo no', '\\n', '']) {
      const { stdout } = await execa('sh', ['-c', `printf %s ${shellQuote(word)}`], { stripFinalNewline: false })
      expect(stdout).toBe(word)
    }
    expect(() => shellQuote('a\0b')).toThrow(TypeError)
  })
})
