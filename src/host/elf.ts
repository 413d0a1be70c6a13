import { open } from 'node:fs/promises'

const PT_INTERP = 3

/** True when an ELF64 executable names no program interpreter, i.e. it is statically linked. */
export async function isStaticElf(path: string): Promise<boolean> {
  const file = await open(path, 'r')
  try {
    const header = Buffer.alloc(64)
    await file.read(header, 0, 64, 0)
    if (header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2) return false
    const programHeaderOffset = Number(header.readBigUInt64LE(32))
    const entrySize = header.readUInt16LE(54)
    const entries = header.readUInt16LE(56)
    const table = Buffer.alloc(entrySize * entries)
    await file.read(table, 0, table.length, programHeaderOffset)
    for (let i = 0; i < entries; i++) {
      if (table.readUInt32LE(i * entrySize) === PT_INTERP) return false
    }
    return true
  } finally {
    await file.close()
  }
}
