import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { withDir } from 'tmp-promise'
import { describe, expect, it } from 'vitest'
import { diskIoVerdict } from '../../src/hypervisor/qemu/disk-io.js'

/** A stand-in for qemu-system that records its argv and exits as told. */
async function fakeQemu(dir: string, body: string): Promise<string> {
  const path = join(dir, 'qemu-system-x86_64')
  await writeFile(path, `#!/bin/sh\nprintf '%s\\n' "$@" > "${dir}/argv"\n${body}\n`)
  await chmod(path, 0o755)
  return path
}

describe('diskIoVerdict', () => {
  it('chooses io_uring when QEMU opens a disk with it and quits cleanly', async () => {
    await withDir(async ({ path: dir }) => {
      const qemu = await fakeQemu(dir, 'cat >/dev/null; exit 0')
      expect(await diskIoVerdict(qemu)).toEqual({ mode: 'io_uring', reason: expect.stringContaining('aio=io_uring') })
    }, { unsafeCleanup: true })
  })

  it("falls back to threads and says why when QEMU refuses io_uring (a container's seccomp profile, say)", async () => {
    await withDir(async ({ path: dir }) => {
      const qemu = await fakeQemu(dir, "echo 'qemu-system-x86_64: -blockdev driver=file: Unable to use io_uring: failed to init linux io_uring ring: Operation not permitted' >&2; exit 1")
      const verdict = await diskIoVerdict(qemu)
      expect(verdict.mode).toBe('threads')
      expect(verdict.reason).toContain('Operation not permitted')
    }, { unsafeCleanup: true })
  })

  it('asks once per QEMU binary in a process', async () => {
    await withDir(async ({ path: dir }) => {
      const qemu = await fakeQemu(dir, 'echo run >> "$(dirname "$0")/runs"; cat >/dev/null; exit 0')
      await Promise.all([diskIoVerdict(qemu), diskIoVerdict(qemu)])
      await diskIoVerdict(qemu)
      expect((await readFile(join(dir, 'runs'), 'utf8')).trim().split('\n')).toHaveLength(1)
      expect(await readFile(join(dir, 'argv'), 'utf8')).toContain(`driver=file,filename=${qemu},node-name=probe,read-only=on,aio=io_uring`)
    }, { unsafeCleanup: true })
  })
})
