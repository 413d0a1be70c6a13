import { stat } from 'node:fs/promises'
import { execa } from 'execa'
import { PromiseCache } from '../common/promise-cache.js'

const identities = new PromiseCache<string, string>()

/**
 * What identifies a QEMU build for saved states (they do not load across QEMU versions): the
 * binary's path, size, inode and mtime, and the first line of its `--version` (which also sees
 * through a wrapper script). Once per process and path.
 */
export function qemuIdentity(qemu: string): Promise<string> {
  return identities.get(qemu, async () => {
    const info = await stat(qemu)
    const version = await execa(qemu, ['--version'], { reject: false, timeout: 10_000, stdin: 'ignore' })
    const firstLine = version.stdout.split('\n')[0]?.trim() ?? ''
    return [qemu, info.size, info.ino, info.mtimeMs, firstLine].join('\0')
  })
}
