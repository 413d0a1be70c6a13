import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'

const fallbackMirror = 'http://deb.debian.org/debian'
const fallbackSecurity = 'http://deb.debian.org/debian-security'

/**
 * The `deb URI SUITE COMPONENTS` lines a guest of `suite` is built from: the mirror given (or
 * VMHARNESS_DEBIAN_MIRROR), else the host's own apt sources for that suite (the mirror this
 * host can reach), else deb.debian.org.
 */
export async function debianSources(suite: string, mirror: string | undefined = process.env.VMHARNESS_DEBIAN_MIRROR, aptDir = '/etc/apt'): Promise<string[]> {
  if (mirror) return [`deb ${mirror} ${suite} main`, `deb ${mirror} ${suite}-updates main`]
  const fromHost = (await hostSourceLines(aptDir)).filter((line) => line.split(' ')[2]?.startsWith(suite))
  if (fromHost.length > 0) return [...new Set(fromHost)]
  return [`deb ${fallbackMirror} ${suite} main`, `deb ${fallbackMirror} ${suite}-updates main`, `deb ${fallbackSecurity} ${suite}-security main`]
}

async function hostSourceLines(aptDir: string): Promise<string[]> {
  const lines: string[] = []
  const oneLine = await readFile(join(aptDir, 'sources.list'), 'utf8').catch(() => '')
  lines.push(...parseOneLineSources(oneLine))
  const parts = await readdir(join(aptDir, 'sources.list.d')).catch(() => [] as string[])
  for (const name of parts.sort()) {
    const text = await readFile(join(aptDir, 'sources.list.d', name), 'utf8').catch(() => '')
    if (name.endsWith('.list')) lines.push(...parseOneLineSources(text))
    if (name.endsWith('.sources')) lines.push(...parseDeb822Sources(text))
  }
  return lines
}

/** `deb [options] URI SUITE COMPONENT...` lines, options dropped (mmdebstrap brings its own keyring). */
export function parseOneLineSources(text: string): string[] {
  const lines: string[] = []
  for (const raw of text.split('\n')) {
    const words = raw.replace(/#.*/, '').replace(/\[[^\]]*\]/, ' ').trim().split(/\s+/)
    if (words[0] === 'deb' && words.length >= 4) lines.push(words.join(' '))
  }
  return lines
}

/** The deb822 `.sources` format: blank-line separated stanzas of Types, URIs, Suites, Components. */
export function parseDeb822Sources(text: string): string[] {
  const lines: string[] = []
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string[]>()
    for (const line of stanza.split('\n')) {
      const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line.replace(/#.*/, ''))
      if (match?.[1] !== undefined && match[2] !== undefined) fields.set(match[1].toLowerCase(), match[2].trim().split(/\s+/).filter(Boolean))
    }
    if (fields.get('enabled')?.[0] === 'no' || !fields.get('types')?.includes('deb')) continue
    const components = fields.get('components') ?? []
    for (const uri of fields.get('uris') ?? []) {
      for (const suite of fields.get('suites') ?? []) lines.push(['deb', uri, suite, ...components].join(' '))
    }
  }
  return lines
}
