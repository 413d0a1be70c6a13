import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { connectUnixSocket } from '../common/unix-socket.js'
import { NetworkError } from '../errors.js'

/**
 * vde_switch's management protocol, as its 2.3.2 speaks it: on connect a banner, then the prompt;
 * each command line is answered by an optional data block (`0000 DATA END WITH '.'`, lines, `.`),
 * a status line (`1000 Success`, or `1<errno> <strerror>` such as `1006 No such device or address`)
 * and the prompt again.
 */
const prompt = '\nvde$ '
const dataHeader = "0000 DATA END WITH '.'"
const statusLine = /^(1\d{3}) (.*)$/

// The switch takes one read() of at most 128 bytes as one command, so a command is written alone,
// fits in that read, and the next waits for the prompt.
const maxCommandBytes = 127

const successCode = 1000
/** `port/setvlan` on a port no client has connected to and no `port/create` made, or to a VLAN that does not exist. */
const noSuchDeviceCode = 1006
const alreadyExistsCode = 1017

export interface MgmtReply {
  /** 1000 for success, else 1000 + the errno the switch returned. */
  code: number
  message: string
  /** The lines of the data block, for commands that print. */
  data: string[]
}

/** One port as `port/allprint` shows it. */
export interface SwitchPort {
  port: number
  /** The untagged VLAN: 0 unless set. */
  vlan: number
  /** Whether a client (a QEMU, a vde_plug) is connected to it now. */
  active: boolean
  /** One line per connected client, as the switch describes it (`QEMU user=... pid=...`). */
  endpoints: string[]
}

/** What the connection waits for now: the prompt that ends a reply (or an error). */
type Waiter = (outcome: string | Error) => void

export interface MgmtConnectOptions {
  /** The network's name, for errors. */
  network: string
  timeoutMs: number
  signal?: AbortSignal
}

/** A connection to a vde_switch's management socket; commands run one at a time, in order. */
export class VdeMgmt {
  private buffer = ''
  private waiter: Waiter | undefined
  private queue: Promise<unknown> = Promise.resolve()
  private closedError: NetworkError | undefined

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
    private readonly network: string,
  ) {
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => this.onData(chunk))
    socket.on('close', () => this.onClose())
    socket.on('error', () => {
      // 'close' follows and rejects whatever is waiting
    })
    // Idle, it must not keep this process alive; a command in flight refs it again.
    socket.unref()
  }

  /** Connects and waits for the first prompt. Retries while the socket does not exist or refuses yet. */
  static async connect(path: string, options: MgmtConnectOptions): Promise<VdeMgmt> {
    const deadline = Date.now() + options.timeoutMs
    for (;;) {
      options.signal?.throwIfAborted()
      let socket: Socket | undefined
      try {
        socket = await connectUnixSocket(path)
        const mgmt = new VdeMgmt(socket, path, options.network)
        await mgmt.awaitPrompt(Math.max(1, deadline - Date.now()))
        return mgmt
      } catch (error) {
        socket?.destroy()
        const code = (error as NodeJS.ErrnoException).code
        if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() >= deadline) {
          throw new NetworkError(`the switch's management socket ${path} does not answer: ${(error as Error).message}`, options.network, { cause: error })
        }
        await sleep(10, undefined, { signal: options.signal })
      }
    }
  }

  /** Runs one command line; resolves with the switch's reply whatever its code. Rejects when the switch does not answer. */
  run(command: string, timeoutMs = 10_000): Promise<MgmtReply> {
    if (command.includes('\n') || Buffer.byteLength(command) >= maxCommandBytes) {
      return Promise.reject(new TypeError(`not a single vde_switch command line of under ${maxCommandBytes} bytes: ${JSON.stringify(command)}`))
    }
    const result = this.queue.then(async () => {
      if (this.closedError) throw this.closedError
      const answered = this.awaitPrompt(timeoutMs)
      this.socket.write(`${command}\n`)
      const text = await answered
      const reply = parseReply(text)
      if (!reply) throw new NetworkError(`vde_switch answered '${command}' without a status line: ${JSON.stringify(text)}`, this.network)
      return reply
    })
    this.queue = result.catch(() => undefined)
    return result
  }

  /** Runs a command that must succeed (or end with one of `accepted`); else a NetworkError with the switch's answer. */
  async succeed(command: string, accepted: number[] = [successCode]): Promise<MgmtReply> {
    return this.checked(command, await this.run(command), accepted)
  }

  async createVlan(vlan: number): Promise<void> {
    await this.succeed(`vlan/create ${vlan}`, [successCode, alreadyExistsCode])
  }

  /**
   * Sets a port's untagged VLAN. The switch refuses a port that no client has connected to yet, so
   * such a port is created first: it keeps its VLAN for the client that connects to it later, and
   * after that client leaves.
   */
  async setPortVlan(port: number, vlan: number): Promise<void> {
    const command = `port/setvlan ${port} ${vlan}`
    const reply = await this.run(command)
    if (reply.code !== noSuchDeviceCode) {
      this.checked(command, reply, [successCode])
      return
    }
    await this.succeed(`port/create ${port}`, [successCode, alreadyExistsCode])
    await this.succeed(command)
  }

  /** Every port the switch knows, with a client or not (`port/allprint`). */
  async ports(): Promise<SwitchPort[]> {
    return parsePorts((await this.succeed('port/allprint')).data)
  }

  close(): void {
    this.socket.destroy()
  }

  private checked(command: string, reply: MgmtReply, accepted: number[]): MgmtReply {
    if (!accepted.includes(reply.code)) throw new NetworkError(`vde_switch refused '${command}': ${reply.code} ${reply.message}`, this.network)
    return reply
  }

  private awaitPrompt(timeoutMs: number): Promise<string> {
    this.socket.ref()
    return new Promise<string>((resolve, reject) => {
      // A late reply would answer the next command: after a timeout the connection is given up.
      const timer = setTimeout(() => this.fail(new NetworkError(`vde_switch did not answer within ${timeoutMs} ms`, this.network)), timeoutMs)
      this.waiter = (outcome) => {
        clearTimeout(timer)
        this.waiter = undefined
        if (!this.socket.destroyed) this.socket.unref()
        if (typeof outcome === 'string') resolve(outcome)
        else reject(outcome)
      }
      if (this.closedError) this.waiter(this.closedError)
      else this.onData('')
    })
  }

  private onData(chunk: string): void {
    this.buffer += chunk
    if (!this.waiter || !this.buffer.endsWith(prompt)) return
    const text = this.buffer.slice(0, -prompt.length)
    this.buffer = ''
    this.waiter(text)
  }

  private onClose(): void {
    this.fail(new NetworkError(`the switch closed its management socket ${this.path}`, this.network))
  }

  private fail(error: NetworkError): void {
    this.closedError ??= error
    this.socket.destroy()
    this.waiter?.(this.closedError)
  }
}

/** A reply's code, message and data block; undefined when it has no status line. */
export function parseReply(text: string): MgmtReply | undefined {
  const lines = text.split('\n')
  const status = lines.map((line) => statusLine.exec(line)).findLast((match) => match !== null)
  if (!status) return undefined
  const start = lines.indexOf(dataHeader)
  const end = start < 0 ? -1 : lines.indexOf('.', start + 1)
  return { code: Number(status[1]), message: status[2] ?? '', data: start < 0 || end < 0 ? [] : lines.slice(start + 1, end) }
}

const portLine = /^Port (\d+) untagged_vlan=(\d+) (ACTIVE|INACTIVE)\b/
const endpointLine = /^\s+-- endpoint ID \d+ module [^:]*: (.*)$/

export function parsePorts(lines: string[]): SwitchPort[] {
  const ports: SwitchPort[] = []
  for (const line of lines) {
    const port = portLine.exec(line)
    if (port) {
      ports.push({ port: Number(port[1]), vlan: Number(port[2]), active: port[3] === 'ACTIVE', endpoints: [] })
      continue
    }
    const endpoint = endpointLine.exec(line)
    if (endpoint) ports.at(-1)?.endpoints.push(endpoint[1] ?? '')
  }
  return ports
}
