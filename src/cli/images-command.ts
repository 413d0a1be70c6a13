import { cacheRoot } from '../host/cache-dir.js'
import { entryDescription, listCacheEntries, pruneCache } from '../host/cache-entries.js'
import { debianImage } from '../images/debian-image.js'
import { tinyImage } from '../images/tiny-image.js'
import { progressReporter } from '../machine/progress.js'

const usage = `usage: vmharness images [list]
       vmharness images build tiny|debian [--package NAME]...
       vmharness images prune [--older-than DAYS | --all]
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
  let olderThan: Date | undefined = new Date(Date.now() - 14 * 86_400_000)
  if (args[0] === '--all' && args.length === 1) olderThan = undefined
  else if (args[0] === '--older-than' && args.length === 2 && /^\d+(\.\d+)?$/.test(args[1] ?? '')) olderThan = new Date(Date.now() - Number(args[1]) * 86_400_000)
  else if (args.length > 0) return (write(usage), 2)
  const removed = await pruneCache(olderThan)
  for (const entry of removed) write(`removed ${entry.kind} ${entry.key} (${formatBytes(entry.bytes)})\n`)
  write(`freed ${formatBytes(removed.reduce((sum, entry) => sum + entry.bytes, 0))}${olderThan ? ` (entries unused since ${olderThan.toISOString().slice(0, 10)})` : ''}\n`)
  return 0
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
