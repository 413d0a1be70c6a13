import { stat } from 'node:fs/promises'
import { HostError } from '../errors.js'

/**
 * Refuses a secret file (a private key) that another user owns or that other users can read or
 * write: it cannot be trusted, or it is no longer a secret. A missing file is left to the caller.
 */
export async function assertPrivateFile(path: string, what: string, retake: string): Promise<void> {
  const info = await stat(path).catch(() => undefined)
  if (!info) return
  if (process.getuid && info.uid !== process.getuid()) {
    throw new HostError(`${what} ${path} belongs to another user (uid ${info.uid}), so it cannot be trusted`, retake)
  }
  if ((info.mode & 0o077) !== 0) {
    throw new HostError(`${what} ${path} can be read or written by other users (mode ${(info.mode & 0o777).toString(8)})`, `chmod 600 ${path}, or ${retake}`)
  }
}
