import type { Writable } from 'node:stream'

export interface ProgressReporter {
  (line: string): void
  /** Ends the updating line on a terminal (so later output starts on a fresh line). */
  done(): void
}

const repeatEveryMs = 15_000

/**
 * Progress for long work. On a terminal: one line, rewritten in place. Elsewhere (CI logs): plain
 * lines, and a line that differs from the last only in its numbers (a ticking elapsed time) is
 * printed at most every 15 s.
 */
export function progressReporter(stream: Writable & { isTTY?: boolean; columns?: number }, prefix = 'vmharness: '): ProgressReporter {
  let open = false
  let lastShape = ''
  let lastPrinted = 0
  const report = ((line: string) => {
    const text = prefix + line
    if (stream.isTTY) {
      const width = Math.max(20, (stream.columns ?? 80) - 1)
      stream.write(`\r\x1b[K${text.length > width ? text.slice(0, width - 1) + '…' : text}`)
      open = true
      return
    }
    const shape = line.replace(/\d+(\.\d+)?/g, '#')
    if (shape === lastShape && Date.now() - lastPrinted < repeatEveryMs) return
    lastShape = shape
    lastPrinted = Date.now()
    stream.write(text + '\n')
  }) as ProgressReporter
  report.done = () => {
    if (open) stream.write('\n')
    open = false
  }
  return report
}
