import { open, readFile, rm } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { processIsAlive } from './process-alive.js'

/**
 * Holds an exclusive lock file while `work` runs, so that parallel workers never build the
 * same artefact twice. A lock whose holder died is taken over.
 */
export async function withFileLock<T>(lockPath: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (;;) {
    signal?.throwIfAborted()
    try {
      const handle = await open(lockPath, 'wx', 0o600)
      await handle.writeFile(String(process.pid))
      await handle.close()
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      const holder = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10)
      if (Number.isInteger(holder) && holder > 0 && !processIsAlive(holder)) {
        await rm(lockPath, { force: true })
        continue
      }
      await sleep(100, undefined, { signal })
    }
  }
  try {
    return await work()
  } finally {
    await rm(lockPath, { force: true })
  }
}
