import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { probeKvm } from '../../src/host/accelerator.js'

// Fake QEMUs: shell scripts that print what a probe guest would on its serial console.
let dir: string
const fake = async (name: string, body: string) => {
  const path = join(dir, name)
  await writeFile(path, `#!/bin/sh\n${body}\n`)
  await chmod(path, 0o755)
  return path
}
const limits = { silenceMs: 600, deadlineMs: 5_000 }

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vmharness-probe-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('the KVM probe', () => {
  it('waits for a slow guest while it keeps printing (a nested KVM), longer than the silence limit in all', async () => {
    const qemu = await fake('slow', 'for i in 1 2 3 4 5 6; do echo "[ $i.0] booting"; sleep 0.3; done\necho "Run /init as init process"')
    const verdict = await probeKvm({ qemu, kernel: '/vmlinuz' }, limits)
    expect(verdict).toMatchObject({ accel: 'kvm', probed: true })
    expect(verdict.reason).toMatch(/reached the kernel in [1-9]/)
  })

  it('gives up on a guest that falls silent (a paravirtual KVM hangs after the real-mode setup)', async () => {
    const qemu = await fake('silent', 'echo "Probing EDD (edd=off to disable)... ok"\nexec sleep 30')
    const started = Date.now()
    const verdict = await probeKvm({ qemu, kernel: '/vmlinuz' }, limits)
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(verdict).toMatchObject({ accel: 'tcg', probed: true })
    expect(verdict.reason).toMatch(/stopped printing for 0.6 s/)
  })

  it('gives up at the deadline on a guest that prints forever without reaching the kernel', async () => {
    const qemu = await fake('chatty', 'while :; do echo tick; sleep 0.1; done')
    const verdict = await probeKvm({ qemu, kernel: '/vmlinuz' }, { silenceMs: 600, deadlineMs: 1_500 })
    expect(verdict).toMatchObject({ accel: 'tcg' })
    expect(verdict.reason).toMatch(/did not reach its end in 1.5 s/)
  })

  it("reports QEMU's own error", async () => {
    const qemu = await fake('broken', 'echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0" >&2\nexit 1')
    const verdict = await probeKvm({ qemu, kernel: '/vmlinuz' }, limits)
    expect(verdict).toMatchObject({ accel: 'tcg' })
    expect(verdict.reason).toMatch(/QEMU cannot run a guest under KVM: .*failed to set MSR 0x10a/)
  })
})
