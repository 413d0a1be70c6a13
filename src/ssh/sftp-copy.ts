import { chmod, lstat, mkdir, readdir, readlink, symlink } from 'node:fs/promises'
import { join, posix } from 'node:path'
import type { SFTPWrapper, Stats } from 'ssh2'

const typeMask = 0o170000
const directoryType = 0o040000
const fileType = 0o100000
const symlinkType = 0o120000

/** What was copied, for the caller's log and tests. */
export interface CopySummary {
  files: number
  directories: number
  symlinks: number
  bytes: number
}

/**
 * Copies a host file, directory tree or symlink to `guestPath` over sftp, keeping permission bits
 * (set explicitly after writing, so the guest's umask does not change them). Other file types
 * (sockets, devices) are refused rather than skipped silently.
 */
export async function copyToGuest(sftp: SFTPWrapper, localPath: string, guestPath: string, summary = emptySummary()): Promise<CopySummary> {
  const info = await lstat(localPath)
  if (info.isSymbolicLink()) {
    const target = await readlink(localPath)
    await call<void>((done) => sftp.symlink(target, guestPath, done), `symlink ${guestPath} -> ${target}`)
    summary.symlinks++
  } else if (info.isDirectory()) {
    const existing = await call<Stats>((done) => sftp.lstat(guestPath, done), guestPath).catch(() => undefined)
    if (!existing) await call<void>((done) => sftp.mkdir(guestPath, done), `mkdir ${guestPath}`)
    for (const entry of await readdir(localPath)) await copyToGuest(sftp, join(localPath, entry), posix.join(guestPath, entry), summary)
    await call<void>((done) => sftp.chmod(guestPath, info.mode & 0o7777, done), `chmod ${guestPath}`)
    summary.directories++
  } else if (info.isFile()) {
    await call<void>((done) => sftp.fastPut(localPath, guestPath, done), `put ${guestPath}`)
    await call<void>((done) => sftp.chmod(guestPath, info.mode & 0o7777, done), `chmod ${guestPath}`)
    summary.files++
    summary.bytes += info.size
  } else {
    throw new Error(`${localPath} is neither a file, a directory nor a symlink`)
  }
  return summary
}

/** The reverse of copyToGuest: a guest file, directory tree or symlink to `localPath`, modes kept. */
export async function copyFromGuest(sftp: SFTPWrapper, guestPath: string, localPath: string, summary = emptySummary()): Promise<CopySummary> {
  const info = await call<Stats>((done) => sftp.lstat(guestPath, done), guestPath)
  const type = info.mode & typeMask
  if (type === symlinkType) {
    await symlink(await call<string>((done) => sftp.readlink(guestPath, done), `readlink ${guestPath}`), localPath)
    summary.symlinks++
  } else if (type === directoryType) {
    await mkdir(localPath, { recursive: true })
    const entries = await call<{ filename: string }[]>((done) => sftp.readdir(guestPath, done), `readdir ${guestPath}`)
    for (const entry of entries) {
      if (entry.filename !== '.' && entry.filename !== '..') await copyFromGuest(sftp, posix.join(guestPath, entry.filename), join(localPath, entry.filename), summary)
    }
    await chmod(localPath, info.mode & 0o7777)
    summary.directories++
  } else if (type === fileType) {
    await call<void>((done) => sftp.fastGet(guestPath, localPath, done), `get ${guestPath}`)
    await chmod(localPath, info.mode & 0o7777)
    summary.files++
    summary.bytes += info.size
  } else {
    throw new Error(`${guestPath} is neither a file, a directory nor a symlink in the guest`)
  }
  return summary
}

function emptySummary(): CopySummary {
  return { files: 0, directories: 0, symlinks: 0, bytes: 0 }
}

/** ssh2's sftp calls take node-style callbacks; a failure names the path it was about. */
function call<T>(start: (done: (error: Error | undefined | null, value?: T) => void) => void, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    start((error, value) => (error ? reject(new Error(`sftp ${what}: ${error.message}`, { cause: error })) : resolve(value as T)))
  })
}
