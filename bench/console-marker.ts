import { open } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'

/** How often the baselines read the console log: the library's console watch reads it as often. */
export const consolePollMs = 20

/**
 * Polls a console log until `marker` and the end of its line are in it, as the library's console
 * watch does; false at the deadline (performance.now() time) or once `gone` says the VM ended.
 */
export async function consoleShows(path: string, marker: string, deadline: number, gone: () => boolean = () => false): Promise<boolean> {
  let seen = ''
  let offset = 0
  while (performance.now() < deadline && !gone()) {
    const file = await open(path, 'r').catch(() => undefined)
    if (file) {
      try {
        const buffer = Buffer.alloc(64 * 1024)
        for (;;) {
          const { bytesRead } = await file.read(buffer, 0, buffer.length, offset)
          if (bytesRead === 0) break
          offset += bytesRead
          seen = (seen + buffer.subarray(0, bytesRead).toString('latin1')).slice(-8192)
        }
      } finally {
        await file.close()
      }
      const at = seen.indexOf(marker)
      if (at >= 0 && seen.indexOf('\n', at) >= 0) return true
    }
    await sleep(consolePollMs)
  }
  return false
}
