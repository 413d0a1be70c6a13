import { setTimeout as sleep } from 'node:timers/promises'
import { WaitTimeoutError } from '../errors.js'

export interface WaitOptions {
  /** How long to keep trying; each wait has its own default. */
  timeoutMs?: number
  /** Pause between attempts. */
  intervalMs?: number
  signal?: AbortSignal
}

/** One look at the guest: done (with a value), or not yet (with what was seen, for the error). */
export type Attempt<T> = { done: true; value: T } | { done: false; seen: string }

/**
 * Calls `attempt` until it reports done, the timeout passes (WaitTimeoutError carrying what the
 * last attempt saw), or the signal aborts. An attempt that throws ends the wait with that error.
 */
export async function pollUntil<T>(
  what: string,
  vm: string,
  attempt: (signal: AbortSignal) => Promise<Attempt<T>>,
  options: WaitOptions & { timeoutMs: number },
): Promise<T> {
  const deadline = AbortSignal.timeout(options.timeoutMs)
  const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline
  const started = Date.now()
  let lastSeen = 'nothing yet: no attempt finished'
  let attempts = 0
  for (;;) {
    try {
      const outcome = await attempt(signal)
      attempts++
      if (outcome.done) return outcome.value
      lastSeen = outcome.seen
      await sleep(options.intervalMs ?? 250, undefined, { signal })
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason ?? error
      if (deadline.aborted) throw new WaitTimeoutError(what, vm, Date.now() - started, attempts, lastSeen)
      throw error
    }
  }
}
