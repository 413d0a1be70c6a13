import { chmod, chown, mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

// runDir() is created once per process: each test imports a fresh copy of the modules.
async function freshRunDir() {
  vi.resetModules()
  const { runDir } = await import('../../src/host/run-dir.js')
  const { HostError } = await import('../../src/errors.js')
  return { runDir, HostError }
}

describe('the runs root ($TMPDIR/vmharness-<uid>, or VMHARNESS_RUN_ROOT)', () => {
  let scratch = ''
  let root = ''

  beforeEach(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'vmharness-run-root-'))
    root = join(scratch, 'root')
    vi.stubEnv('VMHARNESS_RUN_ROOT', root)
  })

  afterEach(async () => {
    vi.unstubAllEnvs()
    await rm(scratch, { recursive: true, force: true })
  })

  it('is created 0700 and used when it is private', async () => {
    const { runDir } = await freshRunDir()
    expect((await runDir()).path.startsWith(`${root}/run-`)).toBe(true)
    expect((await stat(root)).mode & 0o777).toBe(0o700)
  })

  it('is refused when others can read it, with a HostError saying how to fix it', async () => {
    const { runDir, HostError } = await freshRunDir()
    await mkdir(root, { mode: 0o700 })
    await chmod(root, 0o704)
    const failure = await runDir().catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(HostError)
    expect((failure as Error).message).toContain(`${root} is readable by other users (mode 704)`)
    expect((failure as InstanceType<typeof HostError>).fix).toBe(`chmod 700 ${root}`)
  })

  it('is refused when another user owns it, with a HostError saying how to fix it', async () => {
    const { runDir, HostError } = await freshRunDir()
    if (process.getuid?.() === 0) {
      await mkdir(root, { mode: 0o700 })
      await chown(root, 65534, 65534) // nobody
    } else {
      // Not root: a directory root owns stands in for another user's.
      vi.stubEnv('VMHARNESS_RUN_ROOT', (root = '/'))
    }
    const failure = await runDir().catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(HostError)
    expect((failure as Error).message).toContain(`${root} belongs to another user`)
    expect((failure as InstanceType<typeof HostError>).fix).toMatch(/VMHARNESS_RUN_ROOT/)
  })
})
