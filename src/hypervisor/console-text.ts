import { open } from 'node:fs/promises'

/** Console bytes as readable text: escape sequences and carriage returns removed. */
export function cleanConsoleText(raw: string): string {
  return raw
    .replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\x1b[()][A-Z0-9]/g, '')
    .replace(/\r/g, '')
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '')
}

/** The last `lines` non-empty lines of console bytes, as readable text. */
export function consoleTextTail(raw: Buffer, lines: number): string {
  return cleanConsoleText(raw.subarray(-64 * 1024).toString('utf8'))
    .split('\n')
    .filter((line) => line.trim())
    .slice(-lines)
    .join('\n')
}

/** The last `lines` non-empty lines of a console log (reads at most the final 64 KiB). */
export async function consoleLogTail(path: string, lines: number): Promise<string> {
  let file
  try {
    file = await open(path, 'r')
  } catch {
    return ''
  }
  try {
    const { size } = await file.stat()
    const length = Math.min(size, 64 * 1024)
    const buffer = Buffer.alloc(length)
    await file.read(buffer, 0, length, size - length)
    return consoleTextTail(buffer, lines)
  } finally {
    await file.close()
  }
}

/** The bytes a log file gained since `offset`; none when it has not grown or does not exist yet. */
export async function readLogFrom(path: string, offset: number): Promise<Buffer> {
  const file = await open(path, 'r').catch(() => undefined)
  if (!file) return Buffer.alloc(0)
  try {
    const { size } = await file.stat()
    if (size <= offset) return Buffer.alloc(0)
    const buffer = Buffer.alloc(size - offset)
    const { bytesRead } = await file.read(buffer, 0, buffer.length, offset)
    return buffer.subarray(0, bytesRead)
  } finally {
    await file.close()
  }
}
