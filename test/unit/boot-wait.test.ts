import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BootTimeoutError, HypervisorError } from '../../src/errors.js'
import type { ExitInfo, Hypervisor, VmHandle } from '../../src/hypervisor/hypervisor.js'
import { consoleLogTail } from '../../src/hypervisor/console-text.js'
import { waitForBoot } from '../../src/machine/boot-wait.js'
import { waitForConsoleText } from '../../src/machine/console-watch.js'
import { resolveSpec } from '../../src/spec/vm-spec.js'

let dir: string
let log: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'boot-wait-test-'))
  log = join(dir, 'console.log')
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('waitForConsoleText', () => {
  it('finds a marker written in pieces, with the rest of its line, through escape codes', async () => {
    await writeFile(log, '\x1b[2J\x1bcSeaBIOS\r\nvmharness: VMHARNESS_BO')
    const seen = waitForConsoleText(log, ['VMHARNESS_READY', 'VMHARNESS_BOOT_FAILED'], { signal: new AbortController().signal, pollMs: 5 })
    setTimeout(() => void appendFile(log, 'OT_FAILED: no network interface eth0 appeared\r\n'), 30)
    expect(await seen).toEqual({ marker: 'VMHARNESS_BOOT_FAILED', rest: 'no network interface eth0 appeared' })
  })

  it('stops when its signal aborts', async () => {
    const controller = new AbortController()
    const seen = waitForConsoleText(log, ['never'], { signal: controller.signal, pollMs: 5 })
    controller.abort(new Error('enough'))
    await expect(seen).rejects.toThrow('enough')
  })
})

describe('waitForBoot', () => {
  function stubbed(): { hypervisor: Hypervisor; vm: VmHandle } {
    const exited = new Promise<ExitInfo>(() => undefined)
    const vm: VmHandle = {
      id: 'stub',
      name: 'stub',
      backend: 'noop',
      spec: resolveSpec({ image: 'tiny' }, {}),
      ssh: { host: '127.0.0.1', port: 1, user: 'root', hostKey: 'ssh-ed25519 AAAA' },
      readyMarker: 'VMHARNESS_READY',
      failureMarker: 'VMHARNESS_BOOT_FAILED',
      accel: 'tcg',
      exited,
    }
    const hypervisor = {
      consoleEndpoint: () => ({ kind: 'unix-socket', path: join(dir, 'console.sock'), logPath: log }),
      consoleTail: (_vm: VmHandle, lines: number) => consoleLogTail(log, lines),
    } as unknown as Hypervisor
    return { hypervisor, vm }
  }

  it("fails at once with the guest's own reason when it reports a failed boot", async () => {
    await writeFile(log, 'kernel lines\nvmharness: VMHARNESS_BOOT_FAILED: dropbear is not listening on port 22\n')
    const { hypervisor, vm } = stubbed()
    const started = Date.now()
    const failure = await waitForBoot(hypervisor, vm, { ...vm.ssh!, privateKey: 'unused' }, { timeoutMs: 20_000 }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(HypervisorError)
    expect(failure).not.toBeInstanceOf(BootTimeoutError)
    expect((failure as Error).message).toContain('the guest reported that it cannot become ready: dropbear is not listening on port 22')
    expect((failure as Error).message).toContain('last console lines:\n    kernel lines')
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  it('names the stage it was waiting in when the deadline passes', async () => {
    await writeFile(log, 'still booting\n')
    const { hypervisor, vm } = stubbed()
    const failure = await waitForBoot(hypervisor, vm, { ...vm.ssh!, privateKey: 'unused' }, { timeoutMs: 300 }).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(BootTimeoutError)
    expect(failure).toMatchObject({ stage: 'waiting for the console ready marker' })
    expect((failure as Error).message).toContain('still booting')
  })
})
