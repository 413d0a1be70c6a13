import type { BackendName, ResolvedSpec } from '../spec/vm-spec.js'
import type { SshEndpoint } from '../ssh/ssh-session.js'

export type VmStatus = 'prepared' | 'running' | 'paused' | 'stopped' | 'crashed' | 'destroyed'

export interface VmState {
  status: VmStatus
  pid?: number
  /** The backend's own word for it (QMP's `query-status`, say). */
  detail?: string
}

export type ConsoleEndpoint = { kind: 'unix-socket'; path: string; logPath: string } | { kind: 'none' }

export type { SshEndpoint }

export interface ExitInfo {
  exitCode: number | null
  signal: string | null
  /** Whether the harness asked for the exit (stop/destroy) rather than the VM ending by itself. */
  requested: boolean
  /**
   * How a requested stop ended: 'powerdown' when the process ended before the harness sent any
   * signal (the guest powered off through ACPI), else the last signal it sent. Undefined when the
   * VM ended by itself.
   */
  stopMethod?: StopMethod
  stderr: string
}

export type StopMethod = 'powerdown' | 'sigterm' | 'sigkill'

export interface VmHandle {
  readonly id: string
  readonly name: string
  readonly backend: BackendName
  readonly spec: ResolvedSpec
  /** How the guest is reached over SSH once started; undefined for backends without SSH. */
  readonly ssh: SshEndpoint | undefined
  /** A line the guest prints on its console once ready, if its image has one. */
  readonly readyMarker: string | undefined
  /** A line the guest prints when it cannot become ready, if its image has one. */
  readonly failureMarker: string | undefined
  /** A command that returns once a freshly booted guest has finished booting (SSH can come earlier); non-zero: the boot failed, its output says why. */
  readonly readyCommand?: string
  readonly accel: 'kvm' | 'tcg' | 'none'
  /** The external snapshot this VM starts from instead of booting (`spec.restoreFrom`). */
  readonly restoredFrom: string | undefined
  /** Settles when the VM process ends, whatever the reason. Never rejects. */
  readonly exited: Promise<ExitInfo>
}

/**
 * internal: kept inside the VM's own disk overlay, restored in the same process (per-test rollback).
 * external: a frozen disk plus a RAM state file in a directory; a new process is started from it,
 * so any number of VMs can be cloned from one (golden snapshots, warm pools).
 */
export type SnapshotKind = 'internal' | 'external'

export interface SnapshotInfo {
  name: string
  kind: SnapshotKind
  /** The directory of an external snapshot: what `spec.restoreFrom` takes. */
  path: string | undefined
  createdAt: Date
}

export interface SnapshotOptions {
  kind?: SnapshotKind
  /** Where an external snapshot is written (a directory that must not exist yet); default: in the VM's run directory. */
  dir?: string
}

export interface StartVmOptions {
  signal?: AbortSignal
  /** A VM that starts from a saved state stays paused once it is loaded (clones started together, resumed together). */
  leavePaused?: boolean
}

export interface PrepareOptions {
  signal?: AbortSignal
  onProgress?: (line: string) => void
}

/**
 * The contract every backend meets. Calls on a destroyed handle are errors; `stop` and
 * `destroy` are idempotent. What a backend may lack (suspend, snapshots, keep) is in
 * capabilities.ts, each capability an interface with a guard.
 */
export interface Hypervisor {
  readonly name: BackendName
  /** Allocates everything the VM needs (overlay, seed, ports, run directory) without starting it. */
  prepare(spec: ResolvedSpec, options?: PrepareOptions): Promise<VmHandle>
  /** Starts the VM process; resolves once the backend controls it (not when the guest is ready). */
  start(vm: VmHandle, options?: StartVmOptions): Promise<void>
  /** Asks the guest to power off, then forces it after `timeoutMs`. */
  stop(vm: VmHandle, timeoutMs: number): Promise<void>
  /** Stops the VM at once and removes every resource it held. */
  destroy(vm: VmHandle): Promise<void>
  state(vm: VmHandle): Promise<VmState>
  /**
   * The guest's address on `network` (a network name of its spec), or on its first network when
   * none is named. A VM on no network: the address its management NIC has, where the backend knows it.
   */
  guestIp(vm: VmHandle, network?: string): Promise<string>
  /** Where the serial console is; `{ kind: 'none' }` where the backend has none. */
  consoleEndpoint(vm: VmHandle): ConsoleEndpoint
  /** The last lines the guest printed on its console (empty where there is no console). */
  consoleTail(vm: VmHandle, lines: number): Promise<string>
}

/** "signal SIGKILL" or "exit code 1", plus the first lines of stderr when there are any. */
export function describeExit(info: ExitInfo, stderrLines = 0): string {
  const ending = info.signal ? `signal ${info.signal}` : `exit code ${info.exitCode}`
  const stderr = info.stderr.trim().split('\n').slice(0, stderrLines).join('\n')
  return stderr ? `${ending}: ${stderr}` : ending
}
