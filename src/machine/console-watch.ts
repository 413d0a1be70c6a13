import { open } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'

/** Resolves when `marker` appears in the console log (bytes, not lines: the log holds escape codes). */
export async function waitForConsoleText(logPath: string, marker: string, options: { signal: AbortSignal; pollMs?: number }): Promise<void> {
  let offset = 0
  let carry = ''
  for (;;) {
    options.signal.throwIfAborted()
    const file = await open(logPath, 'r').catch(() => undefined)
    if (file) {
      try {
        const { size } = await file.stat()
        if (size > offset) {
          const buffer = Buffer.alloc(size - offset)
          await file.read(buffer, 0, buffer.length, offset)
          offset = size
          const text = carry + buffer.toString('latin1')
          if (text.includes(marker)) return
          carry = text.slice(-marker.length)
        }
      } finally {
        await file.close()
      }
    }
    await sleep(options.pollMs ?? 20, undefined, { signal: options.signal })
  }
}
