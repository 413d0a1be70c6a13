/** One entry of a newc ("070701") cpio archive, the format the Linux kernel unpacks as an initramfs. */
export type CpioEntry =
  | { path: string; type: 'dir'; mode?: number }
  | { path: string; type: 'file'; data: Buffer; mode?: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'char'; major: number; minor: number; mode?: number }

const typeBits = { dir: 0o040000, file: 0o100000, symlink: 0o120000, char: 0o020000 }

export function cpioArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = []
  entries.forEach((entry, index) => parts.push(...record(entry, index + 1)))
  parts.push(...record({ path: 'TRAILER!!!', type: 'file', data: Buffer.alloc(0), mode: 0 }, 0))
  return Buffer.concat(parts)
}

function record(entry: CpioEntry, inode: number): Buffer[] {
  const data = entry.type === 'file' ? entry.data : entry.type === 'symlink' ? Buffer.from(entry.target) : Buffer.alloc(0)
  const permissions = entry.type === 'symlink' ? 0o777 : (entry.mode ?? (entry.type === 'dir' ? 0o755 : 0o644))
  const name = Buffer.from(entry.path.replace(/^\/+/, '') + '\0')
  const fields = [
    inode,
    typeBits[entry.type] | permissions,
    0,
    0,
    entry.type === 'dir' ? 2 : 1,
    0,
    data.length,
    0,
    0,
    entry.type === 'char' ? entry.major : 0,
    entry.type === 'char' ? entry.minor : 0,
    name.length,
    0,
  ]
  const header = Buffer.from('070701' + fields.map((field) => field.toString(16).padStart(8, '0')).join(''))
  return [header, name, padding(header.length + name.length), data, padding(data.length)]
}

function padding(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4)
}
