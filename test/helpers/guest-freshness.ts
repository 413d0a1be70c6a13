import { performance } from 'node:perf_hooks'
import type { Vm } from '../../src/machine/vm.js'

/** What a guest's RNG gives right now: a kernel UUID and 16 bytes of /dev/urandom, as text. */
export async function randomOutput(vm: Vm): Promise<string> {
  return (await vm.succeed('cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"')).trim()
}

export interface ClockReading {
  /** The guest's wall clock, in ms since the epoch, read to the microsecond. */
  guestMs: number
  /** The host's clock when the guest was told to read its own, and when the reading arrived. */
  sentMs: number
  receivedMs: number
}

/**
 * Reads the guest's clock to the microsecond, between two host readings: the guest shell reports
 * ready, waits for a line, then reads its clock, so the window is one transfer and one process
 * start wide. busybox guests read it with `adjtimex`, others with GNU `date +%s.%N`.
 */
export async function readGuestClock(vm: Vm, tool: 'adjtimex' | 'date' = 'adjtimex'): Promise<ClockReading> {
  const read = tool === 'adjtimex' ? `adjtimex | sed -n 's/.*tv_sec: *//p; s/.*tv_usec: *//p'` : 'date +%s.%N'
  let write: ((chunk: Buffer) => void) | undefined
  let sentMs = 0
  let receivedMs = 0
  const result = await vm.exec(`echo R; read line; ${read}`, {
    writeStdin: (writer) => (write = writer),
    onStdout: (chunk) => {
      if (!sentMs && chunk.includes('R')) {
        sentMs = performance.timeOrigin + performance.now()
        write?.(Buffer.from('\n'))
      } else if (sentMs && !receivedMs) {
        receivedMs = performance.timeOrigin + performance.now()
      }
    },
  })
  const numbers = result.stdout.split('\n').slice(1).map((line) => line.trim()).filter(Boolean)
  const guestMs = tool === 'adjtimex' ? Number(numbers[0]) * 1000 + Number(numbers[1]) / 1000 : Number(numbers[0]) * 1000
  if (!Number.isFinite(guestMs) || !receivedMs) throw new Error(`could not read the guest clock: ${JSON.stringify(result)}`)
  return { guestMs, sentMs, receivedMs }
}

/** How far the guest clock lies outside the host's window around the reading, in ms (0 when inside). */
export function clockErrorMs(reading: ClockReading): number {
  if (reading.guestMs < reading.sentMs) return reading.guestMs - reading.sentMs
  if (reading.guestMs > reading.receivedMs) return reading.guestMs - reading.receivedMs
  return 0
}
