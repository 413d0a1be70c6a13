import { execa } from 'execa'
import { PromiseCache } from '../common/promise-cache.js'
import { memoizedFileSha256 } from './file-digest.js'

const identities = new PromiseCache<string, string>()

/**
 * What identifies a QEMU build for saved states (they do not load across QEMU versions): the
 * sha256 of the binary and the first line of its `--version` (which also sees through a wrapper
 * script). Not its path, inode or mtime: the same QEMU on another CI runner, where a restored
 * cache lands, must give the same identity. Once per process and path (the hash is remembered
 * per file version, see memoizedFileSha256).
 */
export function qemuIdentity(qemu: string): Promise<string> {
  return identities.get(qemu, async () => {
    const version = await execa(qemu, ['--version'], { reject: false, timeout: 10_000, stdin: 'ignore' })
    const firstLine = version.stdout.split('\n')[0]?.trim() ?? ''
    return [await memoizedFileSha256(qemu), firstLine].join('\0')
  })
}
