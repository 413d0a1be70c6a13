import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { NetworkError } from '../../src/errors.js'
import { parsePorts, VdeMgmt } from '../../src/network/vde-mgmt.js'

const banner = 'VDE switch V.2.3.2\n(C) Virtual Square Team (coord. R. Davoli) 2005,2006,2007 - GPLv2\n'
const prompt = '\nvde$ '

/** What `port/allprint` printed on a real vde_switch 2.3.2: one port with a client, one made by port/create. */
const allprint = [
  'Port 0005 untagged_vlan=0099 ACTIVE - NOT Unnamed Allocatable',
  ' Current User: root Access Control: (User: NONE - Group: NONE)',
  ' IN:  pkts          0          bytes                    0',
  ' OUT: pkts          0          bytes                    0',
  '  -- endpoint ID 0003 module unix prog   : QEMU user=root pid=12655',
  'Port 0007 untagged_vlan=0000 INACTIVE - Unnamed Allocatable',
  ' Current User: NONE Access Control: (User: NONE - Group: NONE)',
  ' IN:  pkts          0          bytes                    0',
  ' OUT: pkts          0          bytes                    0',
]

type Answer = (command: string) => string

/**
 * A stand-in management socket that answers the way vde_switch does, in small pieces. Like the
 * switch, it takes each read as one command, so it records any read that held more than one.
 */
function scriptedSwitch(path: string, answer: Answer): Promise<{ server: Server; commands: string[]; mergedReads: string[] }> {
  const commands: string[] = []
  const mergedReads: string[] = []
  const server = createServer((socket: Socket) => {
    socket.write(banner)
    socket.write(prompt)
    socket.on('data', (chunk) => {
      const text = chunk.toString()
      if (text.split('\n').filter(Boolean).length !== 1) mergedReads.push(text)
      const command = text.replace(/\n$/, '')
      commands.push(command)
      const reply = answer(command) + prompt
      // In three writes a few milliseconds apart, so that the client has to put the reply together.
      const third = Math.ceil(reply.length / 3)
      ;[0, 1, 2].forEach((part) => setTimeout(() => socket.write(reply.slice(part * third, (part + 1) * third)), part * 5))
    })
  })
  return new Promise((resolve) => server.listen(path, () => resolve({ server, commands, mergedReads })))
}

describe('VdeMgmt', () => {
  let dir: string
  let server: Server | undefined
  let mgmt: VdeMgmt | undefined

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vde-mgmt-test-'))
  })

  afterEach(async () => {
    mgmt?.close()
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)))
    await rm(dir, { recursive: true, force: true })
  })

  it('reads a data block and the status line, sending one command at a time', async () => {
    const fake = await scriptedSwitch(join(dir, 'mgmt'), (command) =>
      command === 'port/allprint' ? `0000 DATA END WITH '.'\n${allprint.join('\n')}\n.\n1000 Success\n` : '1000 Success\n',
    )
    server = fake.server
    mgmt = await VdeMgmt.connect(join(dir, 'mgmt'), { network: 'lan', timeoutMs: 2000 })
    const [created, ports] = await Promise.all([mgmt.run('vlan/create 3'), mgmt.ports()])
    expect(created).toEqual({ code: 1000, message: 'Success', data: [] })
    expect(ports).toEqual([
      { port: 5, vlan: 99, active: true, endpoints: ['QEMU user=root pid=12655'] },
      { port: 7, vlan: 0, active: false, endpoints: [] },
    ])
    expect(fake.commands).toEqual(['vlan/create 3', 'port/allprint'])
    expect(fake.mergedReads).toEqual([])
  })

  it('creates a port that no client has connected to before setting its VLAN, and takes an existing VLAN as created', async () => {
    const made = new Set<number>()
    const fake = await scriptedSwitch(join(dir, 'mgmt'), (command) => {
      const [verb, port] = command.split(' ')
      if (verb === 'vlan/create') return '1017 File exists\n'
      if (verb === 'port/create') return made.add(Number(port)), '1000 Success\n'
      return made.has(Number(port)) ? '1000 Success\n' : '1006 No such device or address\n'
    })
    server = fake.server
    mgmt = await VdeMgmt.connect(join(dir, 'mgmt'), { network: 'lan', timeoutMs: 2000 })
    await mgmt.createVlan(2)
    await mgmt.setPortVlan(4, 2)
    await mgmt.setPortVlan(4, 0)
    expect(fake.commands).toEqual(['vlan/create 2', 'port/setvlan 4 2', 'port/create 4', 'port/setvlan 4 2', 'port/setvlan 4 0'])
  })

  it("turns a refusal into a NetworkError with the switch's answer", async () => {
    server = (await scriptedSwitch(join(dir, 'mgmt'), () => '1022 Invalid argument\n')).server
    mgmt = await VdeMgmt.connect(join(dir, 'mgmt'), { network: 'backbone', timeoutMs: 2000 })
    const error = await mgmt.createVlan(5000).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(NetworkError)
    expect(error).toMatchObject({ network: 'backbone', message: "network 'backbone': vde_switch refused 'vlan/create 5000': 1022 Invalid argument" })
  })

  it('rejects what waits, and what comes later, once the switch closes the socket', async () => {
    const fake = await scriptedSwitch(join(dir, 'mgmt'), () => '1000 Success\n')
    server = fake.server
    server.on('connection', (socket) => socket.on('data', () => socket.destroy()))
    mgmt = await VdeMgmt.connect(join(dir, 'mgmt'), { network: 'lan', timeoutMs: 2000 })
    await expect(mgmt.run('port/print')).rejects.toThrow(/closed its management socket/)
    await expect(mgmt.run('port/print')).rejects.toBeInstanceOf(NetworkError)
  })

  it('gives up on a switch that does not answer, and on a socket that never appears', async () => {
    const silent = createServer(() => {})
    server = await new Promise<Server>((resolve) => silent.listen(join(dir, 'mgmt'), () => resolve(silent)))
    await expect(VdeMgmt.connect(join(dir, 'mgmt'), { network: 'lan', timeoutMs: 200 })).rejects.toThrow(/does not answer: .*did not answer within/)
    await expect(VdeMgmt.connect(join(dir, 'absent'), { network: 'lan', timeoutMs: 200 })).rejects.toThrow(NetworkError)
  })

  it('refuses what the switch would not read as one command', async () => {
    server = (await scriptedSwitch(join(dir, 'mgmt'), () => '1000 Success\n')).server
    mgmt = await VdeMgmt.connect(join(dir, 'mgmt'), { network: 'lan', timeoutMs: 2000 })
    await expect(mgmt.run('port/print\nshutdown')).rejects.toThrow(TypeError)
    await expect(mgmt.run(`help ${'x'.repeat(130)}`)).rejects.toThrow(TypeError)
  })
})

describe('parsePorts', () => {
  it('ignores lines that describe no port or client', () => {
    expect(parsePorts(['', 'VLAN 0000', ...allprint.slice(5)])).toEqual([{ port: 7, vlan: 0, active: false, endpoints: [] }])
  })
})
