import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { connectUnixSocket } from '../../common/unix-socket.js'
import { QmpError } from '../../errors.js'

export interface QmpEvent {
  event: string
  data?: Record<string, unknown>
  timestamp?: { seconds: number; microseconds: number }
}

interface Pending {
  command: string
  resolve: (value: unknown) => void
  reject: (error: Error) => void
  timer: NodeJS.Timeout
}

/**
 * A QMP connection over a unix socket: greeting, capability negotiation, commands correlated
 * by id, and events emitted as 'event' (and by name).
 */
export class QmpClient extends EventEmitter {
  private nextId = 1
  private buffer = ''
  private readonly pending = new Map<string, Pending>()
  private closedError: QmpError | undefined

  private constructor(
    private readonly socket: Socket,
    readonly defaultTimeoutMs: number,
  ) {
    super()
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => this.onData(chunk))
    socket.on('close', () => this.onClose())
    socket.on('error', () => {
      // 'close' follows and rejects whatever is pending
    })
  }

  /** Connects, reads the greeting and enters command mode. Retries while the socket does not exist yet. */
  static async connect(path: string, options: { timeoutMs: number; signal?: AbortSignal; commandTimeoutMs?: number }): Promise<QmpClient> {
    const deadline = Date.now() + options.timeoutMs
    for (;;) {
      options.signal?.throwIfAborted()
      try {
        const socket = await connectUnixSocket(path)
        const client = new QmpClient(socket, options.commandTimeoutMs ?? 30_000)
        await client.handshake(Math.max(1, deadline - Date.now()))
        return client
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() >= deadline) {
          throw new QmpError(`cannot connect to ${path}: ${(error as Error).message}`, undefined, undefined, { cause: error })
        }
        await sleep(10, undefined, { signal: options.signal })
      }
    }
  }

  private greeting?: (error?: Error) => void

  private handshake(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new QmpError('no greeting', undefined)), timeoutMs)
      this.greeting = (error) => {
        clearTimeout(timer)
        if (error) reject(error)
        else resolve()
      }
    }).then(() => this.execute('qmp_capabilities').then(() => undefined))
  }

  /** Runs one command; rejects with QmpError on an error reply, a timeout, or a closed monitor. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.defaultTimeoutMs): Promise<T> {
    if (this.closedError) return Promise.reject(new QmpError('monitor is closed', command, undefined, { cause: this.closedError }))
    const id = String(this.nextId++)
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new QmpError(`no reply within ${timeoutMs} ms`, command))
      }, timeoutMs)
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer })
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n')
    })
  }

  /** Resolves with the first event of that name (matching `filter`), or rejects on timeout or close. */
  waitForEvent(name: string, timeoutMs: number, filter: (event: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (event: QmpEvent) => {
        if (event.event !== name || !filter(event)) return
        cleanup()
        resolve(event)
      }
      const onClose = () => {
        cleanup()
        reject(new QmpError(`monitor closed while waiting for event ${name}`, undefined))
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new QmpError(`no ${name} event within ${timeoutMs} ms`, undefined))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        this.off('event', onEvent)
        this.off('close', onClose)
      }
      this.on('event', onEvent)
      this.on('close', onClose)
    })
  }

  get closed(): boolean {
    return this.closedError !== undefined
  }

  close(): void {
    this.socket.destroy()
  }

  private onData(chunk: string): void {
    this.buffer += chunk
    let newline: number
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim()
      this.buffer = this.buffer.slice(newline + 1)
      if (line) this.onMessage(line)
    }
  }

  private onMessage(line: string): void {
    let message: Record<string, unknown>
    try {
      message = JSON.parse(line) as Record<string, unknown>
    } catch {
      return
    }
    if ('QMP' in message) {
      this.greeting?.()
      this.greeting = undefined
      return
    }
    if (typeof message.event === 'string') {
      this.emit('event', message as unknown as QmpEvent)
      this.emit(message.event, message)
      return
    }
    const id = typeof message.id === 'string' ? message.id : undefined
    const pending = id ? this.pending.get(id) : undefined
    if (!id || !pending) return
    this.pending.delete(id)
    clearTimeout(pending.timer)
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string }
      pending.reject(new QmpError(error.desc ?? 'failed', pending.command, error.class))
    } else {
      pending.resolve(message.return)
    }
  }

  private onClose(): void {
    this.closedError = new QmpError('monitor connection closed', undefined)
    this.greeting?.(this.closedError)
    this.greeting = undefined
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer)
      pending.reject(new QmpError('monitor closed before replying (did QEMU exit?)', pending.command))
      this.pending.delete(id)
    }
    this.emit('close')
  }
}
