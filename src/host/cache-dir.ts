import { mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'

/** Root of the content-addressed cache: $VMHARNESS_CACHE, else $XDG_CACHE_HOME/vmharness, else ~/.cache/vmharness. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VMHARNESS_CACHE) return env.VMHARNESS_CACHE
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'vmharness')
}

export async function cacheSubdir(name: string): Promise<string> {
  const dir = join(cacheRoot(), name)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  return dir
}
