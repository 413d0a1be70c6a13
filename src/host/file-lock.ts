import { readdir, rm, stat } from 'node:fs/promises'
import { execa, type ResultPromise } from 'execa'
import { HostError } from '../errors.js'
import { locateRequired } from './requirements.js'

/**
 * Holds an exclusive lock on `lockPath` while `work` runs, so that parallel workers (and shards
 * sharing a cache) never build the same artefact twice.
 *
 * The lock is the kernel's (flock(2), through util-linux's `flock`), held by a small child
 * process, so it cannot go stale: when its holder dies in any way, even by SIGKILL, the kernel
 * releases it, and no waiter has to judge whether a holder is gone. (A lock file judged stale by
 * a dead pid let two waiters both remove it and both go ahead.) The child dies with this
 * process's thread (parent-death signal) and gives the lock up when its stdin closes.
 *
 * The lock file is removed on release, while still locked. A waiter that then gets the lock on
 * the removed file sees that the path no longer names what it holds, and tries again.
 */
export async function withFileLock<T>(lockPath: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const release = await acquireFileLock(lockPath, signal)
  try {
    return await work()
  } finally {
    await release()
  }
}

/** Waits for the lock; resolves with the function that gives it back. */
export async function acquireFileLock(lockPath: string, signal?: AbortSignal): Promise<() => Promise<void>> {
  const tools = await Promise.all([locateRequired('setpriv'), locateRequired('flock')])
  for (;;) {
    signal?.throwIfAborted()
    // (Wrapped: a subprocess is a promise of its result, which `await` would wait for.)
    const { holder } = await lockedBy(tools, lockPath, signal)
    if (await holdsFileAt(holder.pid as number, lockPath)) {
      return async () => {
        await rm(lockPath, { force: true })
        await end(holder)
      }
    }
    await end(holder)
  }
}

/** A flock process holding the lock on whatever file `lockPath` named when it opened it. */
async function lockedBy([setpriv, flock]: string[], lockPath: string, signal?: AbortSignal): Promise<{ holder: ResultPromise }> {
  // `cat` runs once the lock is held, without the lock's descriptor (--close): it echoes the line
  // written below, which is how this process learns that the lock is held.
  const holder: ResultPromise = execa(setpriv as string, ['--pdeathsig', 'KILL', '--', flock as string, '--exclusive', '--close', lockPath, 'cat'], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    cleanup: true,
  })
  holder.stdin?.write('held\n')
  let stderr = ''
  holder.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal?.reason ?? new Error('aborted'))
      signal?.addEventListener('abort', onAbort, { once: true })
      holder.stdout?.once('data', () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      })
      void holder.then((result) => {
        signal?.removeEventListener('abort', onAbort)
        reject(new HostError(`could not lock ${lockPath}: flock ended (${result.exitCode ?? result.signal}) ${stderr.trim()}`, `check that ${lockPath}'s directory exists and is writable`))
      })
    })
    return { holder }
  } catch (error) {
    holder.kill('SIGKILL')
    await end(holder)
    throw error
  }
}

/** Whether the file the process holds open is the one `path` names now (not one removed since). */
async function holdsFileAt(pid: number, path: string): Promise<boolean> {
  const current = await stat(path).catch(() => undefined)
  if (!current) return false
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const open = await stat(`/proc/${pid}/fd/${fd}`).catch(() => undefined)
    if (open && open.ino === current.ino && open.dev === current.dev) return true
  }
  return false
}

async function end(holder: ResultPromise): Promise<void> {
  holder.stdin?.end()
  await holder
}
