import { readFile, stat } from 'node:fs/promises'
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

/** The base64 body of an OpenSSH private key: what must never appear in a log or an error. */
function secretBody(privateKey: string): string {
  return privateKey.split('\n').filter((line) => line && !line.startsWith('-----')).join('')
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
    const secrets = [secretBody((await runClientKey()).privateKey), secretBody(vm.handle.ssh?.privateKey ?? '')]
    const seedUserData = await vm.succeed('cat /run/seed/user-data')
    const hostKeyBody = secretBody(seedUserData.split('ed25519_private: |')[1]?.split('ed25519_public')[0]?.replace(/^ +/gm, '') ?? '')
    expect(hostKeyBody.length).toBeGreaterThan(100)
    secrets.push(hostKeyBody)
    const texts = [
      await readFile(join(vmDir, 'console.log'), 'utf8'),
      await vm.succeed('false').catch((error: Error) => `${error.message}\n${JSON.stringify(error)}`),
      await SshSession.connect({ ...vm.handle.ssh!, hostKey: generateKeyPair('x').publicKey }, { timeoutMs: 10_000 }).catch((error: Error) => `${error.message}\n${JSON.stringify(error)}`),
      JSON.stringify(vm.commands),
      await vm.consoleTail(200),
    ]
    for (const text of texts) {
      expect(typeof text).toBe('string')
      for (const secret of secrets) expect(String(text)).not.toContain(secret.slice(0, 40))
      expect(String(text)).not.toMatch(/BEGIN OPENSSH PRIVATE KEY/)
    }
  })
})
