import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HostError } from '../errors.js'
import { processIsAlive } from './process-alive.js'

/**
 * Every VM and network of this process lives under one private run directory:
 *   $TMPDIR/vmharness-<uid>/run-<pid>-<random>/owner.json, vm-<id>/{qemu.pid, qmp.sock, ...}, net-<id>/{vde.pid, mgmt, sw/}
 * Short paths on purpose: unix socket paths are limited to 107 bytes.
 */
export interface RunDir {
  path: string
  /** Creates a fresh 0700 directory for one VM. */
  vmDir(id: string): Promise<string>
  /** Creates a fresh 0700 directory for one network's switch. */
  netDir(id: string): Promise<string>
}

/** The files in a run's entries that name a process to kill when the run is over. */
const recordedPidFiles = ['qemu.pid', 'vde.pid']

let current: Promise<RunDir> | undefined

export function runDir(): Promise<RunDir> {
  current ??= createRunDir()
  return current
}

export function runsRoot(): string {
  return process.env.VMHARNESS_RUN_ROOT || join(tmpdir(), `vmharness-${process.getuid?.() ?? 0}`)
}

async function createRunDir(): Promise<RunDir> {
  const root = runsRoot()
  await mkdir(root, { recursive: true, mode: 0o700 })
  const info = await stat(root)
  if (process.getuid && info.uid !== process.getuid()) {
    throw new HostError(`${root} belongs to another user`, `remove it, or set VMHARNESS_RUN_ROOT to a directory of your own`)
  }
  if ((info.mode & 0o077) !== 0) {
    throw new HostError(`${root} is readable by other users (mode ${(info.mode & 0o777).toString(8)})`, `chmod 700 ${root}`)
  }
  await sweepStaleRuns(root)
  const path = join(root, `run-${process.pid}-${randomBytes(3).toString('hex')}`)
  await mkdir(path, { mode: 0o700 })
  await writeFile(join(path, 'owner.json'), JSON.stringify({ pid: process.pid, started: processStartTicks(process.pid) }), { mode: 0o600 })
  // A normal exit kills the VMs and switches still recorded here (detached ones do not die with this
  // process) and removes the run's key and directories now; a crash leaves them to the next sweep.
  process.once('exit', () => {
    killRecordedProcesses(path)
    rmSync(path, { recursive: true, force: true })
  })
  const privateDir = async (name: string) => {
    const dir = join(path, name)
    await mkdir(dir, { mode: 0o700 })
    return dir
  }
  return {
    path,
    vmDir: (id) => privateDir(`vm-${id}`),
    netDir: (id) => privateDir(`net-${id}`),
  }
}

export interface SweepReport {
  runsRemoved: string[]
  processesKilled: number[]
}

/** Removes what runs whose owner died left behind: their QEMU and vde_switch processes first, then their files. */
export async function sweepStaleRuns(root: string = runsRoot()): Promise<SweepReport> {
  const report: SweepReport = { runsRemoved: [], processesKilled: [] }
  const entries = await readdir(root).catch(() => [] as string[])
  for (const entry of entries.filter((name) => name.startsWith('run-'))) {
    const dir = join(root, entry)
    if (await ownerAlive(dir)) continue
    report.processesKilled.push(...killRecordedProcesses(dir))
    await rm(dir, { recursive: true, force: true })
    report.runsRemoved.push(dir)
  }
  return report
}

async function ownerAlive(dir: string): Promise<boolean> {
  try {
    const owner = JSON.parse(await readFile(join(dir, 'owner.json'), 'utf8')) as { pid: number; started?: number }
    if (!processIsAlive(owner.pid)) return false
    return owner.started === undefined || processStartTicks(owner.pid) === owner.started
  } catch {
    // No readable owner file: a run that is still being created, unless it is old.
    const info = await stat(dir).catch(() => undefined)
    return info !== undefined && Date.now() - info.mtimeMs < 60_000
  }
}

/**
 * SIGKILLs the processes recorded in a run's VM and network directories (QEMU, vde_switch); returns
 * their pids. Synchronous, so that it can run in an 'exit' handler too. A recycled pid is never
 * killed: the process has to name this run's directory on its command line.
 */
function killRecordedProcesses(runPath: string): number[] {
  const killed: number[] = []
  for (const entry of readdirSafe(runPath)) {
    for (const pidFile of recordedPidFiles) {
      const pid = Number.parseInt(readFileSafe(join(runPath, entry, pidFile)), 10)
      if (!Number.isInteger(pid) || pid <= 0 || !readFileSafe(`/proc/${pid}/cmdline`).includes(runPath)) continue
      try {
        process.kill(pid, 'SIGKILL')
        killed.push(pid)
      } catch {
        // already gone
      }
    }
  }
  return killed
}

function readdirSafe(path: string): string[] {
  try {
    return readdirSync(path)
  } catch {
    return []
  }
}

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat): tells a reused pid apart. */
export function processStartTicks(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const afterName = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return Number(afterName[19])
  } catch {
    return undefined
  }
}
