import { open } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * The guest's serial console as a readable byte stream, following its log file from `fromOffset`
 * as the guest writes (a file can have any number of readers; QEMU's console socket takes one).
 * It ends when `isFinished()` turns true and everything written has been read, or when destroyed.
 */
export function followConsoleLog(logPath: string, fromOffset: number, isFinished: () => boolean, pollMs = 50): Readable {
  let offset = fromOffset
  let stopped = false
  async function* chunks(): AsyncGenerator<Buffer> {
    const file = await open(logPath, 'r')
    try {
      while (!stopped) {
        const finished = isFinished()
        const { size } = await file.stat()
        if (size > offset) {
          const buffer = Buffer.alloc(size - offset)
          const { bytesRead } = await file.read(buffer, 0, buffer.length, offset)
          offset += bytesRead
          yield buffer.subarray(0, bytesRead)
        } else if (finished) {
          return
        } else {
          await sleep(pollMs)
        }
      }
    } finally {
      await file.close()
    }
  }
  const stream = Readable.from(chunks(), { objectMode: false })
  stream.once('close', () => (stopped = true))
  return stream
}
