import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { HypervisorError } from '../errors.js'
import type { SshSession } from '../ssh/ssh-session.js'
import { guestRefreshProgramBase64 } from './guest-refresh-program.js'

/** Where the refresh program lives in the guest: tmpfs, so a snapshot's RAM carries it to every clone. */
export const guestRefreshPath = '/run/vmharness-refresh'
const entropyBytes = 64
const refreshTimeoutMs = 30_000

const failures: Record<number, string> = {
  2: 'the host entropy did not arrive',
  3: 'cannot open /dev/random',
  4: 'the kernel refused the host entropy (RNDADDENTROPY)',
  5: 'the kernel refused to reseed its RNG (RNDRESEEDCRNG)',
  6: 'cannot answer the host',
  7: 'the host time did not arrive',
  8: 'the kernel refused the new time (clock_settime)',
  126: `${guestRefreshPath} cannot be executed (is /run mounted noexec?)`,
}

/** Copies the refresh program into a booted guest, so that every state saved from it can be refreshed. */
export async function installGuestRefresh(session: SshSession, vmName: string): Promise<void> {
  const program = Buffer.from(guestRefreshProgramBase64, 'base64')
  const partial = `${guestRefreshPath}.partial`
  const result = await session.exec(`umask 077 && cat > ${partial} && chmod 0700 ${partial} && mv -f ${partial} ${guestRefreshPath}`, { stdin: program, timeoutMs: refreshTimeoutMs })
  if (result.exitCode !== 0) {
    throw new HypervisorError(`could not install ${guestRefreshPath} in the guest: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, { vm: vmName })
  }
}

/**
 * Makes a restored or cloned guest fresh: every restore of one saved state starts with the same
 * kernel RNG state and a clock stopped at the save. The guest program credits 64 bytes of host
 * entropy and forces the kernel's CRNG to reseed from them, then reports ready; only then is the
 * host's clock read and sent, so the time set is late by one transfer over a warm channel, not
 * by a process start in a guest whose translated code the restore threw away. Installs the
 * program first when the guest lacks it (a state saved without it).
 */
export async function refreshGuest(session: SshSession, vmName: string): Promise<void> {
  let exitCode = await runRefresh(session)
  if (exitCode === 127) {
    await installGuestRefresh(session, vmName)
    exitCode = await runRefresh(session)
  }
  if (exitCode !== 0) {
    const reason = (exitCode !== null && failures[exitCode]) || `exit code ${exitCode}`
    throw new HypervisorError(`could not refresh the guest's RNG and clock: ${reason}`, { vm: vmName })
  }
}

async function runRefresh(session: SshSession): Promise<number | null> {
  let write: ((chunk: Buffer) => void) | undefined
  let sentTime = false
  const result = await session.exec(`exec ${guestRefreshPath}`, {
    timeoutMs: refreshTimeoutMs,
    writeStdin: (writer) => {
      write = writer
      writer(randomBytes(entropyBytes))
    },
    onStdout: (chunk) => {
      if (sentTime || !chunk.includes('R')) return
      sentTime = true
      write?.(timespecNow())
    },
  })
  return result.exitCode
}

/** The host's wall clock as a struct timespec (64-bit seconds, 64-bit nanoseconds, little-endian). */
export function timespecNow(nowMs = performance.timeOrigin + performance.now()): Buffer {
  const seconds = Math.floor(nowMs / 1000)
  const nanoseconds = Math.min(999_999_999, Math.round((nowMs - seconds * 1000) * 1e6))
  const buffer = Buffer.alloc(16)
  buffer.writeBigInt64LE(BigInt(seconds), 0)
  buffer.writeBigInt64LE(BigInt(nanoseconds), 8)
  return buffer
}
