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

/**
 * Replaces every occurrence of each old value in a saved XML (names, paths). A 'required' one
 * that is not there is an error: going on would leave the domain on its original's files.
 */
export function replaceAll(xml: string, replacements: [string, string, ('required' | 'optional')?][]): string {
  let result = xml
  for (const [from, to, need = 'optional'] of replacements) {
    if (!from || from === to) continue
    if (!result.includes(from)) {
      if (need === 'required') throw new Error(`the saved domain XML does not hold ${from}`)
      continue
    }
    result = result.split(from).join(to)
  }
  return result
}

/** A value as libvirt writes it in an attribute: single-quoted, escaped. */
export function attributeValue(value: string): string {
  return `'${value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll("'", '&apos;').replaceAll('"', '&quot;')}'`
}

/** A value as libvirt writes it as element text. */
export function textValue(value: string): string {
  return value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

export function unescapeXml(text: string): string {
  return text.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&apos;', "'").replaceAll('&amp;', '&')
}
