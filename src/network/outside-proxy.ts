import { rm } from 'node:fs/promises'
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { runDir } from '../host/run-dir.js'
import { allowedDestination } from './outside-destination.js'

/**
 * The only way out for a guest that asked for outside access: an HTTP proxy (plain requests and
 * CONNECT) in this process, on a unix socket in the private run directory. QEMU's user-mode NIC
 * stays `restrict=on`, so the guest still reaches nothing else; and the proxy refuses the host's
 * own addresses, so the opt-in never opens the host's loopback.
 */
export class OutsideProxy {
  private constructor(
    readonly socketPath: string,
    private readonly server: Server,
  ) {}

  static async start(socketPath: string): Promise<OutsideProxy> {
    // A guest's request must never take the test process down: any failure ends that connection only.
    const server = createServer((req, res) => void forwardRequest(req, res).catch(() => res.destroy()))
    server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => void tunnel(req, client, head).catch(() => client.destroy()))
    await rm(socketPath, { force: true })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(socketPath, resolve)
    })
    server.unref()
    return new OutsideProxy(socketPath, server)
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

let shared: Promise<OutsideProxy> | undefined

/** This process's proxy, started on first use; it lives as long as the run directory. */
export function sharedOutsideProxy(): Promise<OutsideProxy> {
  shared ??= runDir()
    .then((dir) => OutsideProxy.start(join(dir.path, 'outside.sock')))
    .catch((error: unknown) => {
      shared = undefined
      throw error
    })
  return shared
}

/**
 * The program QEMU runs for each guest connection to the proxy address (`guestfwd=...-cmd:`):
 * node, joining its stdin and stdout to the proxy's socket. QEMU parses the command as a shell
 * would (words and quotes, no shell), so the code travels as a plain base64 word.
 */
export function proxyBridgeCommand(socketPath: string): string {
  if (/[\s'"\\]/.test(socketPath)) throw new Error(`the run directory ${socketPath} has a space or quote in its path: set VMHARNESS_RUN_ROOT to a plain path`)
  if (/[\s'"\\]/.test(process.execPath)) throw new Error(`node's path ${process.execPath} has a space or quote in it, which QEMU's guestfwd command cannot carry: install node at a plain path for outside access`)
  const code = "const s=require('net').connect(process.argv[3]);process.stdin.pipe(s);s.pipe(process.stdout);s.on('error',()=>process.exit(1));s.on('close',()=>process.exit(0))"
  const loader = 'eval(Buffer.from(process.argv[1],process.argv[2]).toString())'
  return `${process.execPath} -e ${loader} ${Buffer.from(code).toString('base64')} base64 ${socketPath}`
}

async function forwardRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let target: URL
  try {
    target = new URL(req.url ?? '')
    if (target.protocol !== 'http:') throw new Error('not http')
  } catch {
    res.writeHead(400).end('vmharness outside-access proxy: send absolute http:// URLs, or CONNECT for https\n')
    return
  }
  const destination = await allowedDestination(target.hostname)
  if ('refused' in destination) {
    res.writeHead(403).end(`vmharness outside-access proxy: ${destination.refused}\n`)
    return
  }
  const upstream = request(
    { host: destination.address, port: target.port || 80, path: `${target.pathname}${target.search}`, method: req.method, headers: { ...req.headers, host: target.host } },
    (reply) => {
      res.writeHead(reply.statusCode ?? 502, reply.headers)
      reply.pipe(res)
    },
  )
  upstream.on('error', (error) => {
    if (!res.headersSent) res.writeHead(502)
    res.end(`vmharness outside-access proxy: ${error.message}\n`)
  })
  req.pipe(upstream)
}

async function tunnel(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
  client.on('error', () => client.destroy())
  const target = splitHostPort(req.url ?? '')
  if (!target) {
    client.end('HTTP/1.1 400 Bad Request\r\n\r\nvmharness outside-access proxy: CONNECT takes host:port, port 1 to 65535\n')
    return
  }
  const destination = await allowedDestination(target.host)
  if ('refused' in destination) {
    client.end(`HTTP/1.1 403 Forbidden\r\n\r\nvmharness outside-access proxy: ${destination.refused}\n`)
    return
  }
  let established = false
  const upstream = connect(target.port, destination.address, () => {
    established = true
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) upstream.write(head)
    upstream.pipe(client)
    client.pipe(upstream)
  })
  upstream.on('error', (error) => {
    if (established) client.destroy()
    else client.end(`HTTP/1.1 502 Bad Gateway\r\n\r\nvmharness outside-access proxy: ${error.message}\n`)
  })
  upstream.on('close', () => client.destroy())
  client.on('close', () => upstream.destroy())
}

/** `host:port` or `[v6]:port`; undefined for anything else, or a port outside 1..65535. */
export function splitHostPort(authority: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(authority)
  const port = Number(match?.[3])
  if (!match || port < 1 || port > 65535) return undefined
  return { host: (match[1] ?? match[2]) as string, port }
}
