import { setTimeout as sleep } from 'node:timers/promises'
import { readLogFrom } from '../hypervisor/console-text.js'

/**
 * Resolves with the first of `markers` to appear in the console log, and the rest of that line
 * (bytes, not lines, are searched: the log holds escape codes).
 */
export async function waitForConsoleText(logPath: string, markers: string[], options: { signal: AbortSignal; pollMs?: number }): Promise<{ marker: string; rest: string }> {
  const longest = Math.max(...markers.map((marker) => marker.length))
  let offset = 0
  let seen = ''
  for (;;) {
    options.signal.throwIfAborted()
    const chunk = await readLogFrom(logPath, offset)
    if (chunk.length > 0) {
      offset += chunk.length
      seen += chunk.toString('latin1')
      for (const marker of markers) {
        const at = seen.indexOf(marker)
        // Wait for the end of the marker's line, so the reason after it is complete.
        const lineEnd = at >= 0 ? seen.indexOf('\n', at) : -1
        if (lineEnd >= 0) return { marker, rest: seen.slice(at + marker.length, lineEnd).replace(/^[:\s]+|\s+$/g, '') }
      }
      const lastMarkerStart = Math.max(0, seen.length - longest - 4096)
      seen = seen.slice(lastMarkerStart)
    }
    // sleep rejects only on abort; rethrow the signal's own reason, as throwIfAborted does above.
    await sleep(options.pollMs ?? 20, undefined, { signal: options.signal }).catch(() => options.signal.throwIfAborted())
  }
}
