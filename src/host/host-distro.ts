import { readFile } from 'node:fs/promises'

/** The distributions whose package names vmharness knows. */
export type PackageFamily = 'debian' | 'ubuntu'

export interface HostDistro {
  /** os-release's ID ('debian', 'ubuntu', 'fedora'…), or 'unknown' without one. */
  id: string
  /** For messages: PRETTY_NAME, else NAME and VERSION_ID, else the ID. */
  name: string
  /** Undefined for any other distribution, derivatives included: their package names are not known here. */
  family: PackageFamily | undefined
}

/** The host's distribution, from os-release(5). A missing or unreadable file is an unknown distribution. */
export async function readHostDistro(osReleasePath = '/etc/os-release'): Promise<HostDistro> {
  const text = await readFile(osReleasePath, 'utf8').catch(() => undefined)
  if (text === undefined) return { id: 'unknown', name: `an unknown system (no ${osReleasePath})`, family: undefined }
  const fields = parseOsRelease(text)
  const id = fields.get('ID') ?? 'linux'
  const name = fields.get('PRETTY_NAME') ?? ([fields.get('NAME'), fields.get('VERSION_ID')].filter(Boolean).join(' ') || id)
  const family = id === 'debian' || id === 'ubuntu' ? id : undefined
  return { id, name, family }
}

/** `KEY=value` lines, values unquoted (single or double quotes, with backslash escapes in double ones). */
export function parseOsRelease(text: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim())
    if (!match?.[1] || match[2] === undefined) continue
    fields.set(match[1], unquote(match[2]))
  }
  return fields
}

function unquote(value: string): string {
  if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) return value.slice(1, -1)
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) return value.slice(1, -1).replace(/\\(["\\`$])/g, '$1')
  return value
}
