import { createHash } from 'node:crypto'
import { connect } from 'node:net'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import pRetry, { AbortError } from 'p-retry'
import ssh2 from 'ssh2'
import type { ClientChannel, SFTPWrapper } from 'ssh2'
import { HostError, HostKeyMismatchError, SshError } from '../errors.js'
import type { ExecResult } from '../common/exec-result.js'
import { publicKeyBlob } from './keys.js'

/** Where and as whom a guest's sshd is reached, and the one host key it may present. */
export interface SshEndpoint {
  host: string
  port: number
  user: string
  /** The client's OpenSSH private key: the run's key, or the one a restored snapshot was saved with. */
  privateKey: string
  /** The guest host key (`ssh-ed25519 AAAA…`) the harness generated and planted; any other key is refused. */
  hostKey: string
  /** Opens the byte stream to the guest's sshd instead of a TCP connection to host:port (through a jump host, say). */
  connect?: () => Promise<Duplex>
}

export interface ConnectOptions {
  timeoutMs: number
  signal?: AbortSignal
  /**
   * How long one attempt waits for the server's SSH banner. User-mode networking accepts at once
   * and then stalls while the guest is not listening, so this stays short; once the banner has
   * come, the handshake has the rest of `timeoutMs`.
   */
  bannerTimeoutMs?: number
}

export interface ExecOptions {
  signal?: AbortSignal
  timeoutMs?: number
  stdin?: string | Buffer
  /**
   * Called once the command has started, with a function that writes to its stdin: for a command
   * that answers before it is given more. No EOF is sent (see collect), so the command must read
   * exactly what it needs.
   */
  writeStdin?: (write: (chunk: Buffer) => void) => void
  onStdout?: (chunk: Buffer) => void
  onStderr?: (chunk: Buffer) => void
}

export type { ExecResult }

/**
 * dropbear refuses some exec requests ("Unable to exec") when channels open and close quickly
 * side by side, and above about 8 at once stops answering channel opens altogether (measured
 * here). So commands beyond this cap wait their turn, and a refused exec, which never started
 * its command, is sent again.
 */
const maxConcurrentChannels = 4
const execAttempts = 12

/** One ssh2 connection to a guest: many commands at once, sftp, and a pinned host key. */
export class SshSession {
  private sftpSession: Promise<SFTPWrapper> | undefined
  private closed = false
  private openChannels = 0
  private readonly waiting: (() => void)[] = []

  private constructor(
    private readonly client: ssh2.Client,
    readonly endpoint: string,
    /** The stream under the session: destroyed on close, since a guest that vanished (a destroyed VM on a bridge) never closes its end. */
    private readonly stream: Duplex,
  ) {
    client.on('close', () => {
      this.closed = true
    })
  }

  static async connect(target: SshEndpoint, options: ConnectOptions): Promise<SshSession> {
    const endpoint = `${target.user}@${target.host}:${target.port}`
    const deadline = Date.now() + options.timeoutMs
    let attempts = 0
    let lastError: Error | undefined
    try {
      const client = await pRetry(
        async () => {
          attempts++
          try {
            return await connectOnce(target, endpoint, { bannerTimeoutMs: options.bannerTimeoutMs ?? 2_000, deadline, signal: options.signal })
          } catch (error) {
            // A banner wait that the deadline cut short says less than the attempt before it.
            if (!(error instanceof CutShort) || !lastError) lastError = error as Error
            if (error instanceof HostKeyMismatchError || error instanceof NotSsh || error instanceof HostError) throw new AbortError(error)
            throw error
          }
        },
        // At most 100 ms apart: a libvirt guest is polled this way until its sshd listens (each attempt
        // one `virsh domifaddr`, a few ms), and a longer gap was time lost after it began to listen.
        { retries: Number.MAX_SAFE_INTEGER, minTimeout: 50, maxTimeout: 100, factor: 1.5, randomize: false, maxRetryTime: options.timeoutMs, signal: options.signal },
      )
      return new SshSession(client.client, endpoint, client.stream)
    } catch (error) {
      if (error instanceof HostKeyMismatchError || error instanceof HostError) throw error
      if (error instanceof NotSsh) throw new SshError(error.message, endpoint)
      const last = lastError ? `last attempt: ${lastError.message}` : 'no attempt finished'
      if (options.signal?.aborted) throw new SshError(`connecting was aborted after ${attempts} attempts (${last})`, endpoint, { cause: lastError ?? options.signal.reason })
      throw new SshError(`no SSH session within ${options.timeoutMs} ms, ${attempts} attempts (${last})`, endpoint, { cause: lastError ?? error })
    }
  }

  get isClosed(): boolean {
    return this.closed
  }

  /** Runs a command; never rejects for a non-zero exit (that is in the result), only for a broken session. */
  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    await this.acquireChannel()
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.execOnce(command, options)
        } catch (error) {
          if (!(error instanceof ExecRefused) || attempt >= execAttempts) throw error instanceof ExecRefused ? error.reason : error
          await sleep(10 * attempt)
        }
      }
    } finally {
      this.releaseChannel()
    }
  }

  private execOnce(command: string, options: ExecOptions): Promise<ExecResult> {
    return new Promise<ExecResult>((resolve, reject) => {
      if (this.closed) return reject(new SshError(`session is closed; cannot run: ${command}`, this.endpoint))
      options.signal?.throwIfAborted()
      this.client.exec(remoteCommand(command, options), (error, channel) => {
          if (error) return reject(new ExecRefused(new SshError(`cannot run '${command}': ${error.message}`, this.endpoint, { cause: error })))
          collect(channel, command, options, this.endpoint).then(resolve, reject)
        })
    })
  }

  private async acquireChannel(): Promise<void> {
    if (this.openChannels < maxConcurrentChannels) {
      this.openChannels++
      return
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  private releaseChannel(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.openChannels--
  }

  sftp(): Promise<SFTPWrapper> {
    this.sftpSession ??= new Promise((resolve, reject) => {
      this.client.sftp((error, sftp) => (error ? reject(new SshError(`sftp: ${error.message}`, this.endpoint, { cause: error })) : resolve(sftp)))
    })
    return this.sftpSession
  }

  async put(localPath: string, remotePath: string): Promise<void> {
    const sftp = await this.sftp()
    await new Promise<void>((resolve, reject) =>
      sftp.fastPut(localPath, remotePath, (error) => (error ? reject(new SshError(`sftp put ${remotePath}: ${error.message}`, this.endpoint, { cause: error })) : resolve())),
    )
  }

  async get(remotePath: string, localPath: string): Promise<void> {
    const sftp = await this.sftp()
    await new Promise<void>((resolve, reject) =>
      sftp.fastGet(remotePath, localPath, (error) => (error ? reject(new SshError(`sftp get ${remotePath}: ${error.message}`, this.endpoint, { cause: error })) : resolve())),
    )
  }

  /** A TCP connection from the guest's sshd to `guestPort` on the guest's loopback (direct-tcpip). */
  openTunnel(guestPort: number): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new SshError(`session is closed; cannot reach guest port ${guestPort}`, this.endpoint))
      this.client.forwardOut('127.0.0.1', 0, '127.0.0.1', guestPort, (error, channel) =>
        error ? reject(new SshError(`cannot reach guest port ${guestPort}: ${error.message}`, this.endpoint, { cause: error })) : resolve(channel),
      )
    })
  }

  close(): void {
    this.closed = true
    this.client.end()
    this.client.destroy()
    this.stream.destroy()
  }
}

function remoteCommand(command: string, options: ExecOptions): string {
  return options.stdin === undefined && options.writeStdin === undefined ? `exec </dev/null; ${command}` : command
}

/** The server declined to start a command: nothing ran, so it may be sent again. */
class ExecRefused extends Error {
  constructor(readonly reason: SshError) {
    super(reason.message)
  }
}

/**
 * One attempt in two phases: a TCP connection that must show the server's banner within
 * `bannerTimeoutMs`, then the SSH handshake with the time left. A handshake in progress is never
 * cut short: each abandoned connection can hold one of dropbear's five pre-auth slots for minutes.
 */
async function connectOnce(target: SshEndpoint, endpoint: string, limits: { bannerTimeoutMs: number; deadline: number; signal?: AbortSignal }): Promise<{ client: ssh2.Client; stream: Duplex }> {
  const remaining = () => Math.max(1, limits.deadline - Date.now())
  const bannerWindow = Math.min(limits.bannerTimeoutMs, remaining())
  const socket = await openToBanner(target, bannerWindow, limits.signal).catch((error: Error) => {
    throw error instanceof NoBanner && bannerWindow < limits.bannerTimeoutMs ? new CutShort(error.message) : error
  })
  const expected = publicKeyBlob(target.hostKey)
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client()
    let presented: Buffer | undefined
    const onAbort = () => fail(new Error('aborted during the SSH handshake'))
    const fail = (error: Error) => {
      limits.signal?.removeEventListener('abort', onAbort)
      client.removeAllListeners()
      client.on('error', () => undefined)
      client.destroy()
      reject(error)
    }
    limits.signal?.addEventListener('abort', onAbort, { once: true })
    client.once('ready', () => {
      limits.signal?.removeEventListener('abort', onAbort)
      client.removeAllListeners('error')
      client.on('error', () => undefined)
      client.setNoDelay(true)
      resolve({ client, stream: socket })
    })
    client.once('error', (error) => {
      if (presented && !presented.equals(expected)) {
        fail(new HostKeyMismatchError(endpoint, fingerprint(expected), fingerprint(presented)))
      } else {
        fail(error)
      }
    })
    client.connect({
      sock: socket,
      username: target.user,
      privateKey: target.privateKey,
      readyTimeout: remaining(),
      hostVerifier: (key: Buffer) => {
        presented = key
        return key.equals(expected)
      },
    })
  })
}

class NoBanner extends Error {}
/** A banner wait shorter than asked for, because the overall deadline came first. */
class CutShort extends Error {}
/** The port answers, but not with SSH: retrying cannot help. */
class NotSsh extends Error {}

/** A TCP connection on which the server's `SSH-` banner has arrived; the banner is left unread for ssh2. */
async function openToBanner(target: SshEndpoint, timeoutMs: number, signal?: AbortSignal): Promise<Duplex> {
  const socket = target.connect ? await target.connect() : connect({ host: target.host, port: target.port }).setNoDelay(true)
  return new Promise((resolve, reject) => {
    const fail = (error: Error) => {
      settle()
      socket.destroy()
      reject(error)
    }
    const onTimeout = () => fail(new NoBanner(`no SSH banner within ${timeoutMs} ms`))
    const onAbort = () => fail(new Error('aborted while waiting for the SSH banner'))
    const onClose = () => fail(new Error('connection closed before the SSH banner'))
    const onData = (chunk: Buffer) => {
      socket.pause()
      settle()
      socket.unshift(chunk)
      if (chunk.subarray(0, 4).toString('latin1') !== 'SSH-') return fail(new NotSsh(`not an SSH server: ${JSON.stringify(chunk.subarray(0, 40).toString('latin1'))}`))
      resolve(socket)
    }
    const timer = setTimeout(onTimeout, timeoutMs)
    const settle = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      socket.off('error', fail).off('close', onClose).off('data', onData)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    socket.on('error', fail).on('close', onClose).on('data', onData)
  })
}

function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
}

function collect(channel: ClientChannel, command: string, options: ExecOptions, endpoint: string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    let exitCode: number | null = null
    let signal: string | null = null
    let sawExit = false
    let settled = false
    const finish = (error?: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      if (error) {
        channel.destroy()
        reject(error)
      } else {
        resolve({ command, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8'), exitCode, signal })
      }
    }
    const onAbort = () => finish(new SshError(`command aborted: ${command}`, endpoint, { cause: options.signal?.reason }))
    options.signal?.addEventListener('abort', onAbort, { once: true })
    const timer = options.timeoutMs ? setTimeout(() => finish(new SshError(`command did not finish within ${options.timeoutMs} ms: ${command}`, endpoint)), options.timeoutMs) : undefined
    channel.on('data', (chunk: Buffer) => {
      stdout.push(chunk)
      options.onStdout?.(chunk)
    })
    channel.stderr.on('data', (chunk: Buffer) => {
      stderr.push(chunk)
      options.onStderr?.(chunk)
    })
    channel.on('exit', (code: number | null, signalName?: string) => {
      sawExit = true
      if (typeof code === 'number') exitCode = code
      if (signalName) signal = signalName
    })
    // A channel that closes without an exit status was cut off (the connection or the guest went away).
    channel.on('close', () => finish(sawExit ? undefined : new SshError(`the connection closed before the command finished (no exit status): ${command}`, endpoint)))
    channel.on('error', (error: Error) => finish(new SshError(`channel error: ${error.message}`, endpoint, { cause: error })))
    if (options.stdin !== undefined) channel.end(options.stdin)
    else options.writeStdin?.((chunk) => channel.write(chunk))
    // Without stdin the command reads /dev/null (see remoteCommand), so no EOF is sent: dropbear
    // drops the whole connection when an EOF crosses the close of a command that already ended.
  })
}
