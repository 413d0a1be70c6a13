import { readFileSync } from 'node:fs'
import { freemem } from 'node:os'

/** MiB the kernel says can be given to new processes without swapping (MemAvailable), else free memory. */
export function availableMemoryMiB(): number {
  try {
    const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))
    if (match?.[1]) return Number(match[1]) / 1024
  } catch {
    // not Linux: fall through
  }
  return freemem() / 1024 ** 2
}
