import { createServer, type Server, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { SshError } from '../../src/errors.js'
import { generateKeyPair } from '../../src/ssh/keys.js'
import { SshSession } from '../../src/ssh/ssh-session.js'

let server: Server | undefined
const sockets: Socket[] = []

afterEach(async () => {
  for (const socket of sockets) socket.destroy()
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))
  server = undefined
})

/** A loopback TCP server that answers each connection as `greet` says. */
async function listen(greet: (socket: Socket) => void): Promise<number> {
  server = createServer((socket) => {
    sockets.push(socket)
    socket.on('error', () => undefined)
    greet(socket)
  })
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  return (server!.address() as { port: number }).port
}

function target(port: number) {
  const key = generateKeyPair('client')
  return { host: '127.0.0.1', port, user: 'root', privateKey: key.privateKey, hostKey: generateKeyPair('host').publicKey }
}

describe('SshSession.connect', () => {
  it('retries an accepted connection that never shows a banner, and says so at the deadline', async () => {
    let connections = 0
    const port = await listen(() => connections++)
    const started = Date.now()
    const failure = await SshSession.connect(target(port), { timeoutMs: 700, bannerTimeoutMs: 100 }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(SshError)
    expect((failure as Error).message).toMatch(/no SSH session within 700 ms, \d+ attempts \(last attempt: no SSH banner within 100 ms\)/)
    expect(connections).toBeGreaterThan(2)
    expect(Date.now() - started).toBeLessThan(3_000)
  })

  it('refuses a server that is not speaking SSH', async () => {
    const port = await listen((socket) => socket.write('HTTP/1.1 400 Bad Request\r\n\r\n'))
    const failure = await SshSession.connect(target(port), { timeoutMs: 500, bannerTimeoutMs: 200 }).catch((error: unknown) => error)
    expect((failure as Error).message).toContain('not an SSH server: "HTTP/1.1 400')
  })

  it('stops at once when its signal aborts', async () => {
    const port = await listen(() => undefined)
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('test over')), 150)
    const started = Date.now()
    const failure = await SshSession.connect(target(port), { timeoutMs: 30_000, bannerTimeoutMs: 10_000, signal: controller.signal }).catch((error: unknown) => error)
    expect((failure as Error).message).toMatch(/connecting was aborted after 1 attempts \(last attempt: aborted while waiting for the SSH banner\)/)
    expect(Date.now() - started).toBeLessThan(2_000)
  })
})
