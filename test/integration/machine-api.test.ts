import { lstat, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HypervisorError, WaitTimeoutError } from '../../src/errors.js'
import { Vm } from '../../src/machine/vm.js'

// One tiny guest for the whole file: the waits, copies and forwards only add state.
describe('the machine API on a tiny guest', () => {
  let vm: Vm
  let scratch: string

  beforeAll(async () => {
    vm = await Vm.start({ image: 'tiny', name: 'api' })
    scratch = await mkdtemp(join(tmpdir(), 'vmharness-api-'))
  })

  afterAll(async () => {
    await vm?.destroy()
    await rm(scratch, { recursive: true, force: true })
  })

  it('waitUntilSucceeds returns the output once a command starts succeeding', async () => {
    await vm.succeed('rm -f /tmp/flag; (sleep 1; echo ready > /tmp/flag) >/dev/null 2>&1 &')
    expect(await vm.waitUntilSucceeds('cat /tmp/flag', { timeoutMs: 20_000 })).toBe('ready\n')
  })

  it('waitUntilSucceeds gives up at its timeout with the last exit code and stderr', async () => {
    const started = Date.now()
    const error = await vm.waitUntilSucceeds('echo still broken >&2; exit 4', { timeoutMs: 1_500 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(WaitTimeoutError)
    expect((error as WaitTimeoutError).lastSeen).toBe('exit 4:\nstill broken')
    expect((error as Error).message).toMatch(/vm 'api': gave up after \d+\.\d s \(\d+ attempts\) waiting for 'echo still broken/)
    expect(Date.now() - started).toBeLessThan(6_000)
  })

  it('waitUntilFails returns once a command stops succeeding', async () => {
    await vm.succeed('sleep 60 >/dev/null 2>&1 & echo $! > /tmp/sleeper; (sleep 1; kill $(cat /tmp/sleeper)) >/dev/null 2>&1 &')
    const result = await vm.waitUntilFails('kill -0 $(cat /tmp/sleeper)', { timeoutMs: 20_000 })
    expect(result.exitCode).not.toBe(0)
  })

  it('waitForFile honours the AbortSignal, ending with its reason', async () => {
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('the test gave up')), 300)
    await expect(vm.waitForFile('/tmp/never here', { timeoutMs: 60_000, signal: controller.signal })).rejects.toThrow('the test gave up')
    await vm.succeed("touch '/tmp/now here'")
    await vm.waitForFile('/tmp/now here', { timeoutMs: 5_000 })
  })

  it('waitForConsoleText sees a line the guest prints, and the console stream carries it', async () => {
    const stream = vm.console()
    let received = ''
    const streamed = new Promise<void>((resolve) => {
      stream.on('data', (chunk: Buffer) => {
        received += chunk.toString()
        if (received.includes('console marker 42')) resolve()
      })
    })
    await vm.succeed('echo "console marker $((6 * 7))" > /dev/console')
    expect(await vm.waitForConsoleText(/console marker \d+/, { timeoutMs: 10_000 })).toContain('console marker 42')
    await Promise.race([streamed, new Promise((_, reject) => setTimeout(() => reject(new Error(`stream got only: ${received}`)), 5_000))])
    stream.destroy()
  })

  it('waitForOpenPort and forwardPort reach a guest server from the host, and the forward survives a restore', async () => {
    await vm.succeed('mkdir -p /www && echo "hello through ssh" > /www/index.html && httpd -p 127.0.0.1:8000 -h /www')
    await vm.waitForOpenPort(8000, { timeoutMs: 10_000 })
    const port = await vm.forwardPort(8000)
    expect(await (await fetch(`http://127.0.0.1:${port}/index.html`)).text()).toBe('hello through ssh\n')
    await vm.snapshot('with-server')
    await vm.succeed('echo changed > /www/index.html')
    await vm.restore('with-server')
    expect(await (await fetch(`http://127.0.0.1:${port}/index.html`)).text()).toBe('hello through ssh\n')
  })

  it('copies a single file and a symlink both ways, keeping modes', async () => {
    const file = join(scratch, 'run me.sh')
    await writeFile(file, '#!/bin/sh\necho copied\n', { mode: 0o741 })
    await symlink('run me.sh', join(scratch, 'link'))
    await vm.copyTo(file, '/tmp/run me.sh')
    await vm.copyTo(join(scratch, 'link'), '/tmp/link')
    expect(await vm.succeed('/tmp/link; stat -c %a "/tmp/run me.sh"')).toBe('copied\n741\n')
    await vm.copyFrom('/tmp/run me.sh', join(scratch, 'back.sh'))
    await vm.copyFrom('/tmp/link', join(scratch, 'back-link'))
    expect((await stat(join(scratch, 'back.sh'))).mode & 0o777).toBe(0o741)
    expect(await readFile(join(scratch, 'back.sh'), 'utf8')).toBe('#!/bin/sh\necho copied\n')
    expect((await lstat(join(scratch, 'back-link'))).isSymbolicLink()).toBe(true)
    expect(await readlink(join(scratch, 'back-link'))).toBe('run me.sh')
  })

  it('names the guest path when a copy fails', async () => {
    await expect(vm.copyFrom('/no/such/file', join(scratch, 'x'))).rejects.toThrow(HypervisorError)
    await expect(vm.copyFrom('/no/such/file', join(scratch, 'x'))).rejects.toThrow(/copyFrom \/no\/such\/file/)
  })
})
