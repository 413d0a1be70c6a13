import type { ExecResult } from './common/exec-result.js'

const brand = Symbol.for('vmharness.error')

export interface ErrorDetails {
  cause?: unknown
}

/** Base of every error this library throws; `isVmHarnessError` recognises it across realms. */
export class VmHarnessError extends Error {
  readonly [brand] = true
  constructor(message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = new.target.name
  }
}

export function isVmHarnessError(value: unknown): value is VmHarnessError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true
}

/** A VmSpec or option that cannot work; raised before any process starts. */
export class SpecError extends VmHarnessError {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(`${field}: ${message}`)
  }
}

/** Something the host lacks (a binary, a kernel, a working accelerator). `fix` says what to do. */
export class HostError extends VmHarnessError {
  constructor(
    message: string,
    readonly fix: string,
    details: ErrorDetails = {},
  ) {
    super(`${message}\n  fix: ${fix}`, details)
  }
}

/** An image could not be resolved or built. */
export class ImageError extends VmHarnessError {
  constructor(
    message: string,
    readonly image: string,
    details: ErrorDetails = {},
  ) {
    super(`image '${image}': ${message}`, details)
  }
}

/** A backend does not offer the operation asked for. */
export class UnsupportedError extends VmHarnessError {
  constructor(
    readonly backend: string,
    readonly operation: string,
  ) {
    super(`the ${backend} backend does not support ${operation}`)
  }
}

export interface HypervisorErrorDetails extends ErrorDetails {
  vm?: string
  consoleTail?: string
  consoleLogPath?: string
}

/** A VM process failed to start, stopped answering, or refused an operation. */
export class HypervisorError extends VmHarnessError {
  readonly vm: string | undefined
  readonly consoleTail: string | undefined
  readonly consoleLogPath: string | undefined
  constructor(message: string, details: HypervisorErrorDetails = {}) {
    super(withConsole(details.vm ? `vm '${details.vm}': ${message}` : message, details), details)
    this.vm = details.vm
    this.consoleTail = details.consoleTail
    this.consoleLogPath = details.consoleLogPath
  }
}

/** The guest did not become ready in time; names the last stage reached. */
export class BootTimeoutError extends HypervisorError {
  constructor(
    readonly stage: string,
    readonly timeoutMs: number,
    details: HypervisorErrorDetails,
  ) {
    super(`not ready after ${(timeoutMs / 1000).toFixed(1)} s (last stage reached: ${stage})`, details)
  }
}

/** A snapshot could not be saved, found, or restored. */
export class SnapshotError extends HypervisorError {
  constructor(
    message: string,
    readonly snapshot: string,
    details: HypervisorErrorDetails = {},
  ) {
    super(`snapshot '${snapshot}': ${message}`, details)
  }
}

/**
 * A saved state cannot be loaded into this VM because its devices differ (memory, vCPUs,
 * machine type, disks): raised before any process starts, never a dead VM.
 */
export class SnapshotMismatchError extends SnapshotError {
  constructor(
    snapshot: string,
    readonly differences: string[],
  ) {
    super(`was saved from a VM with other devices: ${differences.join('; ')}. Restore it with the spec it was saved from, or save a new snapshot`, snapshot)
  }
}

/** A network between machines cannot do what was asked: its switch died, or a machine name or number does not fit it. */
export class NetworkError extends VmHarnessError {
  constructor(
    message: string,
    readonly network: string,
    details: ErrorDetails = {},
  ) {
    super(`network '${network}': ${message}`, details)
  }
}

/** A QMP command failed, timed out, or the monitor closed. */
export class QmpError extends VmHarnessError {
  constructor(
    message: string,
    readonly command: string | undefined,
    readonly errorClass: string | undefined = undefined,
    details: ErrorDetails = {},
  ) {
    super(command ? `QMP ${command}: ${message}` : `QMP: ${message}`, details)
  }
}

/** SSH could not connect, authenticate, or the guest presented the wrong host key. */
export class SshError extends VmHarnessError {
  constructor(
    message: string,
    readonly endpoint: string,
    details: ErrorDetails = {},
  ) {
    super(`ssh ${endpoint}: ${message}`, details)
  }
}

/** The guest presented a host key other than the pinned one: never retried, never accepted. */
export class HostKeyMismatchError extends SshError {
  constructor(
    endpoint: string,
    readonly expectedFingerprint: string,
    readonly presentedFingerprint: string,
  ) {
    super(`host key mismatch: expected ${expectedFingerprint}, the guest presented ${presentedFingerprint}`, endpoint)
  }
}

/** A wait (`waitUntilSucceeds`, `waitForUnit`, ...) ran out of time; `lastSeen` is what its last look found. */
export class WaitTimeoutError extends VmHarnessError {
  constructor(
    readonly what: string,
    readonly vm: string,
    readonly waitedMs: number,
    readonly attempts: number,
    readonly lastSeen: string,
  ) {
    super(`vm '${vm}': gave up after ${(waitedMs / 1000).toFixed(1)} s (${attempts} attempts) waiting for ${what}\n  last seen:\n${indent(tail(lastSeen, 20) || '(nothing)')}`)
  }
}

/** A systemd unit a test waited for has failed; `status` is what `systemctl status` said of it. */
export class UnitFailedError extends VmHarnessError {
  constructor(
    readonly unit: string,
    readonly vm: string,
    readonly status: string,
  ) {
    super(`vm '${vm}': unit ${unit} failed\n  systemctl status:\n${indent(tail(status, 30))}`)
  }
}

/** A guest command did not end the way `succeed` or `fail` required. */
export class CommandError extends VmHarnessError {
  readonly command: string
  readonly exitCode: number | null
  readonly signal: string | null
  readonly stdout: string
  readonly stderr: string
  constructor(expectation: string, result: ExecResult, vm: string) {
    const ending = result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`
    const stderrTail = tail(result.stderr, 20)
    super(
      `vm '${vm}': command ${expectation} but ended with ${ending}: ${result.command}` +
        (stderrTail ? `\n  stderr (tail):\n${indent(stderrTail)}` : ''),
    )
    this.command = result.command
    this.exitCode = result.exitCode
    this.signal = result.signal
    this.stdout = result.stdout
    this.stderr = result.stderr
  }
}

export function tail(text: string, lines: number): string {
  return text.replace(/\s+$/, '').split('\n').slice(-lines).join('\n')
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n')
}

function withConsole(message: string, details: HypervisorErrorDetails): string {
  let full = message
  if (details.consoleTail) full += `\n  last console lines:\n${indent(details.consoleTail)}`
  if (details.consoleLogPath) full += `\n  console log: ${details.consoleLogPath}`
  return full
}
