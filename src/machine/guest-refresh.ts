import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { HypervisorError } from '../errors.js'
import type { SshSession } from '../ssh/ssh-session.js'
import { guestRefreshProgramBase64 } from './guest-refresh-program.js'

/**
 * Where the refresh program lives in the guest: tmpfs, so that a snapshot's RAM carries it to
 * every clone and the disk is left alone; the root disk where /run is mounted noexec (Debian's).
 */
export const guestRefreshPaths = ['/run/vmharness-refresh', '/var/lib/vmharness/refresh'] as const
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
  126: `${guestRefreshPaths.join(' or ')} cannot be executed`,
}

/** Copies the refresh program into a booted guest, so that every state saved from it can be refreshed. */
export async function installGuestRefresh(session: SshSession, vmName: string): Promise<void> {
  const program = Buffer.from(guestRefreshProgramBase64, 'base64')
  const [inRun, onDisk] = guestRefreshPaths
  const partial = `${inRun}.partial`
  const command = [
    `umask 077 && cat > ${partial} && chmod 0700 ${partial} && mv -f ${partial} ${inRun} || exit 1`,
    // `test -x` is false on a noexec mount, even for root.
    `[ -x ${inRun} ] || { mkdir -p ${onDisk.slice(0, onDisk.lastIndexOf('/'))} && mv -f ${inRun} ${onDisk}; }`,
  ].join('\n')
  const result = await session.exec(command, { stdin: program, timeoutMs: refreshTimeoutMs })
  if (result.exitCode !== 0) {
    throw new HypervisorError(`could not install the refresh program in the guest: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, { vm: vmName })
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
  // Shell builtins only: after a restore every process start is slow (the translated code is gone).
  const command = `for program in ${guestRefreshPaths.join(' ')}; do [ -x "$program" ] && exec "$program"; done; exit 127`
  const result = await session.exec(command, {
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
