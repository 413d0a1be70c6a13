import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HostError } from '../../errors.js'
import { processIsAlive } from '../../host/process-alive.js'
import { processStartTicks, runsRoot } from '../../host/run-dir.js'

/** A VM left running for a person to look into, as `vmharness ssh` finds it. */
export interface KeptVm {
  name: string
  id: string
  dir: string
  pid: number
  pidStarted: number | undefined
  sshPort: number
  sshUser: string
  /** Why it was kept: the failed test's name. */
  reason: string
  keptAt: string
}

export interface KeepRequest {
  name: string
  id: string
  vmDir: string
  pid: number
  sshPort: number
  sshUser: string
  privateKey: string
  hostKey: string
  reason: string
}

export function keptRoot(): string {
  return join(runsRoot(), 'kept')
}

/**
 * Moves a running VM's directory out of its run (whose exit would remove it) into the kept area,
 * with what `ssh` needs: the client key (0600) and a known_hosts file pinning the guest's key.
 * QEMU keeps working: it holds its files open, and its sockets move with the directory.
 */
export async function recordKept(request: KeepRequest): Promise<KeptVm> {
  await mkdir(keptRoot(), { recursive: true, mode: 0o700 })
  const dir = join(keptRoot(), `${request.name.replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 40)}-${request.id}`)
  await rename(request.vmDir, dir)
  await writeFile(join(dir, 'client_key'), request.privateKey, { mode: 0o600 })
  await writeFile(join(dir, 'known_hosts'), `[127.0.0.1]:${request.sshPort} ${request.hostKey.trim()}\n`, { mode: 0o600 })
  const kept: KeptVm = {
    name: request.name,
    id: request.id,
    dir,
    pid: request.pid,
    pidStarted: processStartTicks(request.pid),
    sshPort: request.sshPort,
    sshUser: request.sshUser,
    reason: request.reason,
    keptAt: new Date().toISOString(),
  }
  await writeFile(join(dir, 'kept.json'), JSON.stringify(kept, null, 2), { mode: 0o600 })
  return kept
}

/** Kept VMs whose QEMU still runs; entries whose VM has died are removed on the way. */
export async function listKept(): Promise<KeptVm[]> {
  const found: KeptVm[] = []
  for (const entry of await readdir(keptRoot()).catch(() => [] as string[])) {
    const dir = join(keptRoot(), entry)
    const kept = await readFile(join(dir, 'kept.json'), 'utf8').then((text) => JSON.parse(text) as KeptVm, () => undefined)
    if (kept && isRunning(kept)) found.push(kept)
    else await rm(dir, { recursive: true, force: true })
  }
  return found
}

/** The one kept VM called `nameOrId`; a HostError listing what is kept when none or several match. */
export async function findKept(nameOrId: string): Promise<KeptVm> {
  const all = await listKept()
  const matches = all.filter((kept) => kept.id === nameOrId || kept.name === nameOrId)
  if (matches.length === 1 && matches[0]) return matches[0]
  const known = all.map((kept) => `${kept.name} (${kept.id})`).join(', ') || 'none'
  if (matches.length === 0) throw new HostError(`no kept VM called '${nameOrId}' (kept now: ${known})`, 'run a suite with VMHARNESS_KEEP=on-failure; a failed test keeps its VM')
  throw new HostError(`${matches.length} kept VMs are called '${nameOrId}': ${matches.map((kept) => kept.id).join(', ')}`, 'name one by its id')
}

/** Kills a kept VM and removes its directory. */
export async function discardKept(kept: KeptVm): Promise<void> {
  if (isRunning(kept)) process.kill(kept.pid, 'SIGKILL')
  await rm(kept.dir, { recursive: true, force: true })
}

function isRunning(kept: KeptVm): boolean {
  return processIsAlive(kept.pid) && (kept.pidStarted === undefined || processStartTicks(kept.pid) === kept.pidStarted)
}
