import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CommandError, HostKeyMismatchError } from '../../src/errors.js'
import { Vm } from '../../src/machine/vm.js'
import { generateKeyPair, runClientKey } from '../../src/ssh/keys.js'
import { SshSession } from '../../src/ssh/ssh-session.js'

// One booted guest serves every test in this file: these tests only read or add state.
describe('a booted tiny guest', () => {
  let vm: Vm
  let scratch: string

  beforeAll(async () => {
    vm = await Vm.start({ image: 'tiny', name: 'exec' })
    scratch = await mkdtemp(join(tmpdir(), 'vmharness-test-'))
  })

  afterAll(async () => {
    await vm?.destroy()
    await rm(scratch, { recursive: true, force: true })
  })

  it('runs a command and returns its stdout', async () => {
    expect(await vm.succeed('echo hello; uname -s')).toBe('hello\nLinux\n')
    expect(await vm.succeed('hostname')).toBe('exec\n')
  })

  it('reports exit codes and stderr as they are', async () => {
    const result = await vm.exec('echo out; echo err >&2; exit 3')
    expect(result).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 3, signal: null })
  })

  it('reports a command killed by a signal', async () => {
    const result = await vm.exec('kill -TERM $$')
    expect(result).toMatchObject({ signal: 'SIGTERM', exitCode: null })
  })

  it('throws CommandError from succeed with the command, exit code and stderr tail', async () => {
    const failure = await vm.succeed('echo broken >&2; exit 7').catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(CommandError)
    expect(failure).toMatchObject({ command: 'echo broken >&2; exit 7', exitCode: 7, stderr: 'broken\n' })
    expect((failure as Error).message).toContain('broken')
  })

  it('makes fail succeed only for a failing command', async () => {
    expect((await vm.fail('false')).exitCode).toBe(1)
    await expect(vm.fail('true')).rejects.toThrow(/expected to fail/)
  })

  it('carries 64 MiB of output through one command intact', async () => {
    const stdoutHash = createHash('sha256')
    let bytes = 0
    const result = await vm.exec('head -c 67108864 /dev/zero | tr "\\0" "x"; echo', {
      onStdout: (chunk) => {
        bytes += chunk.length
        stdoutHash.update(chunk)
      },
    })
    expect(result.exitCode).toBe(0)
    expect(bytes).toBe(64 * 1024 * 1024 + 1)
    expect(result.stdout.length).toBe(64 * 1024 * 1024 + 1)
    expect(stdoutHash.digest('hex')).toBe(createHash('sha256').update('x'.repeat(64 * 1024 * 1024) + '\n').digest('hex'))
  })

  it('runs 20 commands at once over one connection, each getting its own answer', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => vm.exec(`sleep 0.$((${i} % 3)); echo ${i}; exit ${i % 4}`)))
    results.forEach((result, i) => {
      expect(result.stdout).toBe(`${i}\n`)
      expect(result.exitCode).toBe(i % 4)
    })
  })

  it('copies a file in and out over sftp unchanged', async () => {
    const local = join(scratch, 'in.bin')
    const back = join(scratch, 'out.bin')
    const content = randomBytes(3 * 1024 * 1024 + 17)
    await writeFile(local, content)
    await vm.putFile(local, '/tmp/copied.bin')
    expect(await vm.succeed('wc -c < /tmp/copied.bin')).toBe(`${content.length}\n`)
    expect((await vm.succeed('sha256sum /tmp/copied.bin')).split(' ')[0]).toBe(createHash('sha256').update(content).digest('hex'))
    await vm.getFile('/tmp/copied.bin', back)
    expect((await readFile(back)).equals(content)).toBe(true)
  })

  it('suspends and resumes: a command sent while paused completes only after resume', async () => {
    await vm.suspend()
    expect(await vm.state()).toMatchObject({ status: 'paused' })
    let finished = false
    const pending = vm.succeed('echo resumed').then((out) => {
      finished = true
      return out
    })
    await new Promise((resolve) => setTimeout(resolve, 700))
    expect(finished).toBe(false)
    await vm.resume()
    expect(await pending).toBe('resumed\n')
    expect(await vm.state()).toMatchObject({ status: 'running' })
  })

  it('fetches over HTTP by name with wget; a refused port is a plain failure, not a crash', async () => {
    await vm.succeed('mkdir -p /tmp/www && echo "served by name" > /tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www')
    expect(await vm.succeed('cat /etc/hosts')).toBe('127.0.0.1 localhost\n::1 localhost\n')
    expect(await vm.succeed('wget -qO- http://localhost:8080/')).toBe('served by name\n')
    const refused = await vm.exec('wget -qO- http://localhost:1/')
    expect(refused).toMatchObject({ exitCode: 1, signal: null })
    expect(refused.stderr).toContain('Connection refused')
    // This busybox's wget has no -T (`wget -T 5` dies with SIGSEGV): a timeout comes from `timeout`.
    expect(await vm.succeed('timeout 5 wget -qO- http://localhost:8080/')).toBe('served by name\n')
  })

  it("knows the guest's own address", async () => {
    expect(await vm.guestIp()).toBe('10.0.2.15')
    expect(await vm.succeed('ip -4 addr show eth0')).toContain('10.0.2.15/24')
  })

  it('refuses a guest that presents a host key other than the pinned one', async () => {
    const endpoint = vm.handle.ssh!
    const key = await runClientKey()
    const impostorExpectation = generateKeyPair('someone-else').publicKey
    const failure = await SshSession.connect({ ...endpoint, privateKey: key.privateKey, hostKey: impostorExpectation }, { timeoutMs: 10_000 }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(HostKeyMismatchError)
    expect((failure as Error).message).toMatch(/host key mismatch: expected SHA256:\S+, the guest presented SHA256:\S+/)
    const trusted = await SshSession.connect({ ...endpoint, privateKey: key.privateKey }, { timeoutMs: 10_000 })
    expect((await trusted.exec('echo pinned')).stdout).toBe('pinned\n')
    trusted.close()
  })
})
