import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { LibvirtConnection } from './libvirt-connection.js'
import { headerLength, parseSaveImageHeader, withDomainXml } from './save-image-header.js'
import type { Pool } from './storage-pool.js'

/**
 * Reads and rewrites the header of a save file in the pool, on whichever host it is: only the
 * header's bytes travel (vol-download and vol-upload of a range), never the saved RAM.
 */
export async function rewriteSavedDomainXml(connection: LibvirtConnection, pool: Pool, volume: string, scratchDir: string, edit: (xml: string) => string): Promise<void> {
  const file = join(scratchDir, `header-${volume}`)
  try {
    await connection.run(['vol-download', '--pool', pool.name, volume, file, '--length', '92'])
    const length = headerLength(await readFile(file))
    await connection.run(['vol-download', '--pool', pool.name, volume, file, '--length', String(length)])
    const header = parseSaveImageHeader(await readFile(file))
    await writeFile(file, withDomainXml(header, edit(header.xml)), { mode: 0o600 })
    await connection.run(['vol-upload', '--pool', pool.name, volume, file, '--offset', '0', '--length', String(length)])
  } finally {
    await rm(file, { force: true })
  }
}

/** Replaces every occurrence of each old value in the saved XML (names, paths), as attribute or text. */
export function replaceAll(xml: string, replacements: [string, string][]): string {
  let result = xml
  for (const [from, to] of replacements) if (from && from !== to) result = result.split(from).join(to)
  return result
}
