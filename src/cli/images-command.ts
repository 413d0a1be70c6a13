import { cacheRoot } from '../host/cache-dir.js'
import { entryDescription, listCacheEntries, pruneCache } from '../host/cache-entries.js'
import { debianImage } from '../images/debian-image.js'
import { tinyImage } from '../images/tiny-image.js'
import { progressReporter } from '../machine/progress.js'

const usage = `usage: vmharness images [list]
       vmharness images build tiny|debian [--package NAME]...
       vmharness images prune [--older-than DAYS | --all] [--max-size SIZE]
`

/** `vmharness images`: what the cache holds (images and golden snapshots, with sizes), builds, pruning. */
export async function imagesCommand(args: string[], write: (text: string) => void): Promise<number> {
  const [action = 'list', ...rest] = args
  if (action === 'list' && rest.length === 0) return list(write)
  if (action === 'build') return build(rest, write)
  if (action === 'prune') return prune(rest, write)
  write(usage)
  return 2
}

async function list(write: (text: string) => void): Promise<number> {
  const entries = await listCacheEntries()
  write(`cache: ${cacheRoot()}\n`)
  if (entries.length === 0) write('  (empty)\n')
  for (const entry of entries) {
    const age = describeAge(Date.now() - entry.lastUsed.getTime())
    write(`  ${entry.kind.padEnd(6)}  ${formatBytes(entry.bytes).padStart(9)}  used ${age.padEnd(10)}  ${entry.key}  ${await entryDescription(entry)}\n`)
  }
  const total = entries.reduce((sum, entry) => sum + entry.bytes, 0)
  write(`  total ${formatBytes(total)} in ${entries.length} entries\n`)
  return 0
}

async function build(args: string[], write: (text: string) => void): Promise<number> {
  const [name, ...options] = args
  const packages: string[] = []
  for (let i = 0; i < options.length; i++) {
    if (options[i] === '--package' && options[i + 1]) packages.push(options[++i] as string)
    else return (write(usage), 2)
  }
  const onProgress = progressReporter(process.stderr)
  const image = name === 'tiny' && packages.length === 0 ? await tinyImage({ onProgress }) : name === 'debian' ? await debianImage({ packages, onProgress }) : undefined
  if (!image) return (write(usage), 2)
  onProgress.done()
  write(`${image.name}: ${image.disk}\n`)
  return 0
}

async function prune(args: string[], write: (text: string) => void): Promise<number> {
  let olderThan: Date | undefined | null = new Date(Date.now() - 14 * 86_400_000)
  let byAge = false
  let maxBytes: number | undefined
  for (let i = 0; i < args.length; i++) {
    const [option, value] = [args[i], args[i + 1]]
    if (option === '--all' && !byAge) (olderThan = undefined), (byAge = true)
    else if (option === '--older-than' && !byAge && /^\d+(\.\d+)?$/.test(value ?? '')) (olderThan = new Date(Date.now() - Number(value) * 86_400_000)), (byAge = true), i++
    else if (option === '--max-size' && maxBytes === undefined && parseSize(value) !== undefined) (maxBytes = parseSize(value)), i++
    else return (write(usage), 2)
  }
  // --max-size alone limits the size only; with --older-than or --all, both apply.
  if (maxBytes !== undefined && !byAge) olderThan = null
  const removed = await pruneCache(olderThan, { maxBytes })
  for (const entry of removed) write(`removed ${entry.kind} ${entry.key} (${formatBytes(entry.bytes)})\n`)
  const reasons = [olderThan ? `entries unused since ${olderThan.toISOString().slice(0, 10)}` : '', maxBytes !== undefined ? `least recently used first, down to ${formatBytes(maxBytes)}` : ''].filter(Boolean)
  write(`freed ${formatBytes(removed.reduce((sum, entry) => sum + entry.bytes, 0))}${reasons.length > 0 ? ` (${reasons.join('; ')})` : ''}\n`)
  if (maxBytes !== undefined) {
    const left = (await listCacheEntries()).reduce((sum, entry) => sum + entry.bytes, 0)
    if (left > maxBytes) write(`the cache still holds ${formatBytes(left)}: the rest is in use by a running VM or being built\n`)
  }
  return 0
}

/** `20G`, `512M`, `1.5GiB`, `800K` or a number of bytes (binary units: G is GiB). */
export function parseSize(text: string | undefined): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text ?? '')
  if (!match) return undefined
  const power = ['', 'K', 'M', 'G', 'T'].indexOf((match[2] ?? '').toUpperCase())
  return Math.floor(Number(match[1]) * 1024 ** power)
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  return `${Math.round(bytes / 1024)} KiB`
}

function describeAge(ms: number): string {
  if (ms < 3_600_000) return `${Math.max(0, Math.round(ms / 60_000))} min ago`
  if (ms < 86_400_000) return `${Math.round(ms / 3_600_000)} h ago`
  return `${Math.round(ms / 86_400_000)} d ago`
}
