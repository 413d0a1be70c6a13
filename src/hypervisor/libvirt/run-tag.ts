import { readFileSync, readlinkSync } from 'node:fs'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { hostname } from 'node:os'
import { basename, join } from 'node:path'
import { processIsAlive } from '../../host/process-alive.js'
import { processStartTicks, runDir } from '../../host/run-dir.js'
import type { LibvirtConnection } from './libvirt-connection.js'
import { deleteVolume, uploadVolume, volumesStartingWith, type Pool } from './storage-pool.js'

/**
 * Everything the harness makes on a libvirt host is named `vmh-<run>-…`, where <run> is this
 * process's run (the random part of its run directory), and the run has an owner volume,
 * `vmh-<run>.owner`, saying which process on which machine made it. The sweep removes what runs
 * whose owner died left behind. Runs of other machines are left alone: their owners cannot be
 * checked from here.
 */
export interface RunOwner {
  host: string
  bootId: string
  /** The PID namespace the pid belongs to: a sandbox or container on the same machine has its own. */
  pidNamespace: string
  pid: number
  started: number | undefined
}

export async function runTag(): Promise<string> {
  return basename((await runDir()).path).split('-').pop() as string
}

export function thisOwner(): RunOwner {
  return { host: hostname(), bootId: bootId(), pidNamespace: pidNamespace(), pid: process.pid, started: processStartTicks(process.pid) }
}

/** Writes this run's owner volume on the host (once per connection). */
export async function registerRun(connection: LibvirtConnection, pool: Pool): Promise<void> {
  const tag = await runTag()
  const file = join((await runDir()).path, `libvirt-owner-${tag}.json`)
  await writeFile(file, JSON.stringify(thisOwner()), { mode: 0o600 })
  try {
    await deleteVolume(connection, pool, `vmh-${tag}.owner`)
    await uploadVolume(connection, pool, `vmh-${tag}.owner`, file)
  } finally {
    await rm(file, { force: true })
  }
}

export interface LibvirtSweepReport {
  runs: string[]
  domains: string[]
  networks: string[]
  volumes: string[]
}

/** Removes the domains, networks and volumes of runs whose owner, on this machine, is gone. */
export async function sweepDeadRuns(connection: LibvirtConnection, pool: Pool): Promise<LibvirtSweepReport> {
  const report: LibvirtSweepReport = { runs: [], domains: [], networks: [], volumes: [] }
  const mine = await runTag()
  for (const volume of await volumesStartingWith(connection, pool, 'vmh-')) {
    const tag = /^vmh-([0-9a-f]+)\.owner$/.exec(volume)?.[1]
    if (!tag || tag === mine) continue
    const owner = await readOwner(connection, pool, volume)
    if (!owner || !ownerIsDead(owner)) continue
    report.runs.push(tag)
    await removeRun(connection, pool, tag, report)
  }
  return report
}

/** Removes everything named for run `tag`, and its owner volume last. */
export async function removeRun(connection: LibvirtConnection, pool: Pool, tag: string, report?: LibvirtSweepReport): Promise<void> {
  const prefix = `vmh-${tag}-`
  for (const domain of (await connection.run(['list', '--all', '--name'])).split('\n').map((l) => l.trim())) {
    if (!domain.startsWith(prefix)) continue
    await connection.tryRun(['destroy', domain])
    await connection.tryRun(['undefine', domain, '--snapshots-metadata'])
    report?.domains.push(domain)
  }
  for (const network of (await connection.run(['net-list', '--all', '--name'])).split('\n').map((l) => l.trim())) {
    if (!network.startsWith(prefix)) continue
    await connection.tryRun(['net-destroy', network])
    await connection.tryRun(['net-undefine', network])
    report?.networks.push(network)
  }
  for (const volume of await volumesStartingWith(connection, pool, prefix)) {
    await deleteVolume(connection, pool, volume)
    report?.volumes.push(volume)
  }
  await deleteVolume(connection, pool, `vmh-${tag}.owner`)
}

async function readOwner(connection: LibvirtConnection, pool: Pool, volume: string): Promise<RunOwner | undefined> {
  const file = join((await runDir()).path, `libvirt-read-${volume}`)
  try {
    await connection.run(['vol-download', '--pool', pool.name, volume, file])
    return JSON.parse(await readFile(file, 'utf8')) as RunOwner
  } catch {
    return undefined
  } finally {
    await rm(file, { force: true })
  }
}

function ownerIsDead(owner: RunOwner): boolean {
  if (owner.host !== hostname()) return false
  if (owner.bootId !== bootId()) return true
  // A pid of another PID namespace cannot be checked from here: left alone.
  if (owner.pidNamespace !== pidNamespace()) return false
  if (!processIsAlive(owner.pid)) return true
  return owner.started !== undefined && processStartTicks(owner.pid) !== owner.started
}

function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid')
  } catch {
    return ''
  }
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return ''
  }
}
