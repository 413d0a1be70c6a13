import { createWriteStream } from 'node:fs'
import { open, rm } from 'node:fs/promises'
import { createServer, type Socket } from 'node:net'
import { pipeline } from 'node:stream/promises'
import { QmpError } from '../../errors.js'
import type { QmpClient } from './qmp-client.js'
import { waitForMigration } from './qmp-jobs.js'

/** The default (~128 MiB/s) makes saving a 256 MiB guest take most of a second; a file can take it all at once. */
const unlimitedBandwidth = 64 * 1024 ** 3

/**
 * Writes the VM's RAM and device state to `file`. QEMU 7.2 can migrate only to a socket, a
 * file descriptor or a shell command; a unix socket we listen on keeps shells out of it.
 * The VM is expected to be paused already.
 */
export async function migrateToFile(qmp: QmpClient, socketPath: string, file: string, timeoutMs: number): Promise<void> {
  const server = createServer()
  const received = new Promise<void>((resolve, reject) => {
    server.once('connection', (socket: Socket) => {
      pipeline(socket, createWriteStream(file, { mode: 0o600 })).then(resolve, reject)
    })
    server.once('error', reject)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socketPath, () => resolve())
  })
  try {
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': unlimitedBandwidth })
    await qmp.execute('migrate', { uri: `unix:${socketPath}` })
    await waitForMigration(qmp, timeoutMs)
    await withTimeout(received, timeoutMs, 'the state file was not written completely')
  } finally {
    server.close()
    await rm(socketPath, { force: true })
  }
}

/** Feeds a saved state to a QEMU started with `-incoming defer`, through the fd it inherited as 3. */
export async function migrateFromInheritedFd(qmp: QmpClient, timeoutMs: number): Promise<void> {
  await qmp.execute('migrate-incoming', { uri: 'fd:3' })
  await waitForMigration(qmp, timeoutMs)
}

/** Opens a state file for a child to inherit; the caller closes it once the child has started. */
export async function openStateFile(file: string): Promise<{ fd: number; close: () => Promise<void> }> {
  const handle = await open(file, 'r')
  return { fd: handle.fd, close: () => handle.close() }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new QmpError(message, 'migrate')), ms)))])
  } finally {
    clearTimeout(timer)
  }
}
