import { join } from 'node:path'
import { HostError } from '../errors.js'

/** sun_path holds 108 bytes, the terminating NUL included. */
export const maxSocketPathBytes = 107

/**
 * The longest unix socket path that vde binds inside a switch's data socket directory: libvdeplug
 * (in QEMU, in vde_plug) binds its end as `<dir>/.<pid %05d>-<n %05d>`, and a pid has up to 7
 * digits (pid_max is at most 2^22). The switch's own `<dir>/ctl` and `<dir>/<port %03d>.<fd>` are
 * shorter. vde does not refuse a longer path: it truncates it, and the ends then collide.
 */
export function longestVdeSocketPath(dataSocketDir: string): string {
  return join(dataSocketDir, `.${'9'.repeat(7)}-${'0'.repeat(5)}`)
}

/** A HostError before anything starts when vde's sockets in `dataSocketDir` would not fit a unix socket path. */
export function checkVdeSocketPaths(dataSocketDir: string, runDirPath: string): void {
  const longest = longestVdeSocketPath(dataSocketDir)
  const bytes = Buffer.byteLength(longest)
  if (bytes <= maxSocketPathBytes) return
  throw new HostError(
    `the switch's sockets would have paths of up to ${bytes} bytes, such as ${longest}, and a unix socket path holds at most ${maxSocketPathBytes}; they live in the run directory ${runDirPath}`,
    `set VMHARNESS_RUN_ROOT (or TMPDIR) to a directory with a path at least ${bytes - maxSocketPathBytes} bytes shorter, such as /tmp/vmh`,
  )
}
