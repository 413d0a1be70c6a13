import type { BackendName, ResolvedSpec } from '../spec/vm-spec.js'

export type VmStatus = 'prepared' | 'running' | 'paused' | 'stopped' | 'crashed' | 'destroyed'

export interface VmState {
  status: VmStatus
  pid?: number
  /** The backend's own word for it (QMP's `query-status`, say). */
  detail?: string
}

/** What a backend can do beyond prepare/start/stop/destroy/state; anything else is an UnsupportedError. */
export type Feature = 'suspend' | 'ssh' | 'console'

export type ConsoleEndpoint = { kind: 'unix-socket'; path: string; logPath: string } | { kind: 'none' }

export interface SshEndpoint {
  host: string
  port: number
  user: string
  /** The guest host key the harness generated and planted; no other key is accepted. */
  hostKey: string
}

export interface ExitInfo {
  exitCode: number | null
  signal: string | null
  /** Whether the harness asked for the exit (stop/destroy) rather than the VM ending by itself. */
  requested: boolean
  stderr: string
}

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
  readonly accel: 'kvm' | 'tcg' | 'none'
  /** Settles when the VM process ends, whatever the reason. Never rejects. */
  readonly exited: Promise<ExitInfo>
}

export interface PrepareOptions {
  signal?: AbortSignal
  onProgress?: (line: string) => void
}

/**
 * The contract every backend meets. Calls on a destroyed handle are errors; `stop` and
 * `destroy` are idempotent. An operation outside `features` throws UnsupportedError.
 */
export interface Hypervisor {
  readonly name: BackendName
  readonly features: ReadonlySet<Feature>
  /** Allocates everything the VM needs (overlay, seed, ports, run directory) without starting it. */
  prepare(spec: ResolvedSpec, options?: PrepareOptions): Promise<VmHandle>
  /** Starts the VM process; resolves once the backend controls it (not when the guest is ready). */
  start(vm: VmHandle, options?: { signal?: AbortSignal }): Promise<void>
  /** Asks the guest to power off, then forces it after `timeoutMs`. */
  stop(vm: VmHandle, timeoutMs: number): Promise<void>
  suspend(vm: VmHandle): Promise<void>
  resume(vm: VmHandle): Promise<void>
  /** Stops the VM at once and removes every resource it held. */
  destroy(vm: VmHandle): Promise<void>
  state(vm: VmHandle): Promise<VmState>
  /** The guest's own address on its network. */
  guestIp(vm: VmHandle): Promise<string>
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
