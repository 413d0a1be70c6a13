import { readFile, stat } from 'node:fs/promises'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HostKeyMismatchError } from '../../src/errors.js'
import { runDir, runsRoot } from '../../src/host/run-dir.js'
import { Vm } from '../../src/machine/vm.js'
import { generateKeyPair, runClientKey } from '../../src/ssh/keys.js'
import { SshSession } from '../../src/ssh/ssh-session.js'

/** Local addresses of host TCP sockets listening on `port` (IPv4 and IPv6), from /proc. */
async function listenersOn(port: number): Promise<string[]> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  const found: string[] = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (await readFile(table, 'utf8')).split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/)
      if (local?.endsWith(`:${hex}`) && state === '0A') found.push(local.slice(0, -5))
    }
  }
  return found
}

async function mode(path: string): Promise<string> {
  return ((await stat(path)).mode & 0o777).toString(8)
}

/** The base64 body of an OpenSSH private key, without its BEGIN/END lines. */
function keyBody(privateKey: string): string {
  return privateKey.split('\n').filter((line) => line && !line.startsWith('-----')).join('')
}

/**
 * Every 20-character window of a private key's base64 body that carries secret material: windows
 * that every OpenSSH key shares (its header) or that also appear in the public key line are left
 * out, so what remains cannot show up in a log unless key material leaked.
 */
function secretWindows(privateKey: string, publicKeyLine: string): string[] {
  const body = keyBody(privateKey)
  const shared = keyBody(generateKeyPair('another').privateKey) + '\n' + publicKeyLine
  const windows: string[] = []
  for (let i = 0; i + 20 <= body.length; i++) {
    const window = body.slice(i, i + 20)
    if (!shared.includes(window)) windows.push(window)
  }
  return windows
}

/** The secret windows found in `text`, if any (empty when none leaked). */
function leaked(text: string, windows: string[]): string[] {
  const flat = text.replace(/\s+/g, '')
  return windows.filter((window) => flat.includes(window))
}

describe('security basics on a running guest', () => {
  let vm: Vm
  let vmDir: string

  beforeAll(async () => {
    vm = await Vm.start({ image: 'tiny', name: 'security' })
    const endpoint = vm.hypervisor.consoleEndpoint(vm.handle)
    vmDir = endpoint.kind === 'unix-socket' ? dirname(endpoint.logPath) : ''
  })

  afterAll(async () => {
    await vm?.destroy()
  })

  it('SSH and forwarded ports listen on 127.0.0.1 only', async () => {
    const sshPort = vm.handle.ssh?.port as number
    const cmdline = (await readFile(`/proc/${(await vm.state()).pid}/cmdline`, 'utf8')).split('\0')
    expect(cmdline.find((arg) => arg.startsWith('user,'))).toContain(`hostfwd=tcp:127.0.0.1:${sshPort}-:22`)
    expect(await listenersOn(sshPort)).toEqual(['0100007F'])
    await vm.succeed('httpd -p 127.0.0.1:8000 -h /tmp')
    const forwarded = await vm.forwardPort(8000)
    expect(await listenersOn(forwarded)).toEqual(['0100007F'])
  })

  it("the guest cannot reach the host's loopback through user-mode networking (10.0.2.2), nor the world", async () => {
    const server: Server = createServer((socket) => socket.end('secret-from-host-loopback\n'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const port = (server.address() as AddressInfo).port
      // The same fetch through 10.0.2.2 printed the secret on a guest without restrict=on.
      const result = await vm.exec(`nc -w 3 10.0.2.2 ${port} </dev/null; echo "exit $?"`)
      expect(result.stdout).not.toContain('secret-from-host-loopback')
      expect(result.stdout).toMatch(/exit [1-9]/)
      const outside = await vm.exec('nc -w 3 192.0.2.1 80 </dev/null; echo "exit $?"')
      expect(outside.stdout).toMatch(/exit [1-9]/)
    } finally {
      server.close()
    }
  })

  it('run directories are 0700 and key files 0600', async () => {
    const key = await runClientKey()
    expect(await mode(runsRoot())).toBe('700')
    expect(await mode((await runDir()).path)).toBe('700')
    expect(await mode(vmDir)).toBe('700')
    expect(await mode(key.path)).toBe('600')
    const snapshot = await vm.snapshot('keys', { kind: 'external' })
    expect(await mode(snapshot.path as string)).toBe('700')
    expect(await mode(join(snapshot.path as string, 'client_key'))).toBe('600')
  })

  it('a guest presenting another host key is refused', async () => {
    const endpoint = vm.handle.ssh!
    const impostor = generateKeyPair('impostor').publicKey
    const failure = await SshSession.connect({ ...endpoint, hostKey: impostor }, { timeoutMs: 10_000 }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(HostKeyMismatchError)
  })

  it('no private key appears in the console log, in errors, or in the command record', async () => {
    const runKey = await runClientKey()
    const seedUserData = await vm.succeed('cat /run/seed/user-data')
    const hostPrivate = seedUserData.split('ed25519_private: |')[1]?.split('ed25519_public')[0]?.replace(/^ +/gm, '') ?? ''
    const hostPublic = seedUserData.split('ed25519_public:')[1]?.split('\n')[0]?.trim() ?? ''
    const secrets = [
      secretWindows(runKey.privateKey, runKey.publicKey),
      secretWindows(vm.handle.ssh?.privateKey ?? '', runKey.publicKey),
      secretWindows(hostPrivate, hostPublic),
    ]
    // An ed25519 key's body is ~400 base64 characters, the secret half of it well over 100 windows.
    for (const windows of secrets) expect(windows.length).toBeGreaterThan(100)
    // The check can fail: the key's body lines without its header are found.
    expect(leaked(keyBody(hostPrivate).slice(140), secrets[2] ?? [])).not.toEqual([])
    const texts = [
      await readFile(join(vmDir, 'console.log'), 'utf8'),
      await vm.succeed('false').catch((error: Error) => `${error.message}\n${JSON.stringify(error)}`),
      await SshSession.connect({ ...vm.handle.ssh!, hostKey: generateKeyPair('x').publicKey }, { timeoutMs: 10_000 }).catch((error: Error) => `${error.message}\n${JSON.stringify(error)}`),
      JSON.stringify(vm.commands),
      await vm.consoleTail(200),
    ]
    for (const text of texts) {
      expect(typeof text).toBe('string')
      for (const windows of secrets) expect(leaked(String(text), windows)).toEqual([])
      expect(String(text)).not.toMatch(/BEGIN OPENSSH PRIVATE KEY/)
    }
  })
})
