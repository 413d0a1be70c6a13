import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { readLogFrom } from '../hypervisor/console-text.js'

/**
 * The guest's serial console as a readable byte stream, following its log file from `fromOffset`
 * as the guest writes (a file can have any number of readers; QEMU's console socket takes one).
 * It ends when `isFinished()` turns true and everything written has been read, or when destroyed.
 */
export function followConsoleLog(logPath: string, fromOffset: number, isFinished: () => boolean, pollMs = 50): Readable {
  let offset = fromOffset
  let stopped = false
  async function* chunks(): AsyncGenerator<Buffer> {
    while (!stopped) {
      const finished = isFinished()
      const chunk = await readLogFrom(logPath, offset)
      if (chunk.length > 0) {
        offset += chunk.length
        yield chunk
      } else if (finished) {
        return
      } else {
        await sleep(pollMs)
      }
    }
  }
  const stream = Readable.from(chunks(), { objectMode: false })
  stream.once('close', () => (stopped = true))
  return stream
}
