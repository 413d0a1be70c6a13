import { createServer, type Server, type Socket } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { QmpError } from '../../src/errors.js'
import { QmpClient } from '../../src/hypervisor/qemu/qmp-client.js'

type Script = (command: { execute: string; id: string; arguments?: unknown }, socket: Socket) => void

/** A stand-in QMP server: sends the greeting, then answers each command as the script says. */
function scriptedServer(path: string, script: Script): Promise<Server> {
  const server = createServer((socket) => {
    socket.write(JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } }) + '\r\n')
    let buffer = ''
    socket.on('data', (chunk) => {
      buffer += chunk.toString()
      let newline: number
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + 1)
        const command = JSON.parse(line) as { execute: string; id: string }
        if (command.execute === 'qmp_capabilities') socket.write(JSON.stringify({ return: {}, id: command.id }) + '\r\n')
        else script(command, socket)
      }
    })
  })
  return new Promise((resolve) => server.listen(path, () => resolve(server)))
}

describe('QmpClient', () => {
  let dir: string
  let server: Server | undefined
  let client: QmpClient | undefined

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qmp-test-'))
  })

  afterEach(async () => {
    client?.close()
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))
    await rm(dir, { recursive: true, force: true })
  })

  it('negotiates capabilities and correlates replies by id, even out of order', async () => {
    const held: { id: string; execute: string }[] = []
    server = await scriptedServer(join(dir, 'qmp.sock'), (command, socket) => {
      held.push(command)
      if (held.length === 2) {
        for (const reply of [...held].reverse()) socket.write(JSON.stringify({ return: { answer: reply.execute }, id: reply.id }) + '\n')
      }
    })
    client = await QmpClient.connect(join(dir, 'qmp.sock'), { timeoutMs: 2000 })
    const [first, second] = await Promise.all([client.execute('query-status'), client.execute('query-name')])
    expect(first).toEqual({ answer: 'query-status' })
    expect(second).toEqual({ answer: 'query-name' })
  })

  it('turns an error reply into a QmpError with the class', async () => {
    server = await scriptedServer(join(dir, 'qmp.sock'), (command, socket) => {
      socket.write(JSON.stringify({ error: { class: 'CommandNotFound', desc: 'The command nope has not been found' }, id: command.id }) + '\n')
    })
    client = await QmpClient.connect(join(dir, 'qmp.sock'), { timeoutMs: 2000 })
    const failure = await client.execute('nope').catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(QmpError)
    expect(failure).toMatchObject({ command: 'nope', errorClass: 'CommandNotFound' })
  })

  it('delivers events and can wait for one by name', async () => {
    server = await scriptedServer(join(dir, 'qmp.sock'), (command, socket) => {
      socket.write(JSON.stringify({ event: 'STOP', timestamp: { seconds: 1, microseconds: 0 } }) + '\n')
      socket.write(JSON.stringify({ return: {}, id: command.id }) + '\n')
    })
    client = await QmpClient.connect(join(dir, 'qmp.sock'), { timeoutMs: 2000 })
    const stopped = client.waitForEvent('STOP', 2000)
    await client.execute('stop')
    expect((await stopped).event).toBe('STOP')
  })

  it('times out a command that gets no reply', async () => {
    server = await scriptedServer(join(dir, 'qmp.sock'), () => undefined)
    client = await QmpClient.connect(join(dir, 'qmp.sock'), { timeoutMs: 2000 })
    await expect(client.execute('query-status', undefined, 100)).rejects.toThrow(/no reply within 100 ms/)
  })

  it('rejects pending commands when the monitor closes', async () => {
    server = await scriptedServer(join(dir, 'qmp.sock'), (_command, socket) => socket.destroy())
    client = await QmpClient.connect(join(dir, 'qmp.sock'), { timeoutMs: 2000 })
    await expect(client.execute('quit')).rejects.toThrow(/closed before replying/)
    await expect(client.execute('query-status')).rejects.toThrow(/monitor is closed/)
  })

  it('waits for a socket that appears late, and gives up at its deadline', async () => {
    const path = join(dir, 'late.sock')
    const connecting = QmpClient.connect(path, { timeoutMs: 2000 })
    setTimeout(() => void scriptedServer(path, () => undefined).then((s) => (server = s)), 150)
    client = await connecting
    expect(client.closed).toBe(false)
    await expect(QmpClient.connect(join(dir, 'never.sock'), { timeoutMs: 100 })).rejects.toThrow(QmpError)
  })
})
