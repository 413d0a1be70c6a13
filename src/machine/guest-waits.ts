import { UnitFailedError } from '../errors.js'
import { cleanConsoleText, readLogFrom } from '../hypervisor/console-text.js'
import type { ExecResult } from '../ssh/ssh-session.js'
import { shellQuote } from '../ssh/shell-quote.js'
import { pollUntil, type Attempt, type WaitOptions } from './poll.js'

/** What the waits need of a machine: a way to run commands, its name, and its console log. */
export interface WaitTarget {
  name: string
  exec(command: string, options: { signal?: AbortSignal }): Promise<ExecResult>
  consoleLogPath(): string | undefined
}

const defaultTimeoutMs = 60_000

export function waitUntilSucceeds(target: WaitTarget, command: string, options: WaitOptions = {}): Promise<string> {
  return untilExitZero(target, `'${command}' to succeed`, command, describeResult, options).then((result) => result.stdout)
}

export function waitUntilFails(target: WaitTarget, command: string, options: WaitOptions = {}): Promise<ExecResult> {
  return pollUntil(`'${command}' to fail`, target.name, async (signal) => {
    const result = await target.exec(command, { signal })
    return result.exitCode !== 0 ? { done: true, value: result } : { done: false, seen: describeResult(result) }
  }, withDefaultTimeout(options))
}

/** Until systemd reports the unit active; a failed unit ends the wait at once with its status. */
export function waitForUnit(target: WaitTarget, unit: string, options: WaitOptions = {}): Promise<void> {
  const quoted = shellQuote(unit)
  return pollUntil(`unit ${unit} to be active`, target.name, async (signal): Promise<Attempt<void>> => {
    const result = await target.exec(`systemctl is-active -- ${quoted}`, { signal })
    const state = result.stdout.trim()
    if (state === 'active') return { done: true, value: undefined }
    if (state === 'failed') {
      const status = await target.exec(`systemctl status --no-pager --full --lines=20 -- ${quoted}`, { signal })
      throw new UnitFailedError(unit, target.name, status.stdout + status.stderr)
    }
    return { done: false, seen: `systemctl is-active: ${state || result.stderr.trim() || `exit ${result.exitCode}`}` }
  }, withDefaultTimeout(options))
}

/**
 * Until something in the guest listens on TCP `port` (any address, IPv4 or IPv6). Read from
 * /proc, so it needs no tools in the guest: the tiny image has no `ss`.
 */
export function waitForOpenPort(target: WaitTarget, port: number, options: WaitOptions = {}): Promise<void> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`port must be 1 to 65535, got ${port}`)
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  const command = `cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -c ':${hex} [0-9A-F:]* 0A '`
  return untilExitZero(target, `TCP port ${port} to be listening`, command, () => `no listener on port ${port} in /proc/net/tcp{,6}`, options).then(() => undefined)
}

export function waitForFile(target: WaitTarget, path: string, options: WaitOptions = {}): Promise<void> {
  return untilExitZero(target, `file ${path} to exist`, `test -e ${shellQuote(path)}`, () => `${path} does not exist`, options).then(() => undefined)
}

/**
 * Until a console line printed since `fromOffset` (a byte offset in the console log) contains
 * `text` or matches it. Resolves with the matching line.
 */
export function waitForConsoleText(target: WaitTarget, text: string | RegExp, fromOffset: number, options: WaitOptions = {}): Promise<string> {
  const matches = (line: string) => (typeof text === 'string' ? line.includes(text) : text.test(line))
  let offset = fromOffset
  let pending = ''
  const recent: string[] = []
  return pollUntil(`console text ${String(text)}`, target.name, async () => {
    const logPath = target.consoleLogPath()
    if (!logPath) return { done: false, seen: 'this backend has no console log' }
    const chunk = await readLogFrom(logPath, offset)
    offset += chunk.length
    const lines = (pending + cleanConsoleText(chunk.toString('utf8'))).split('\n')
    pending = lines.pop() ?? ''
    for (const line of [...lines, pending]) {
      if (matches(line)) return { done: true, value: line }
    }
    recent.push(...lines.filter((line) => line.trim()))
    recent.splice(0, Math.max(0, recent.length - 20))
    return { done: false, seen: recent.join('\n') || '(no console output since the wait began)' }
  }, { ...withDefaultTimeout(options), intervalMs: options.intervalMs ?? 50 })
}

/** Runs `command` until it exits 0 and returns that result; `notYet` says what a failed try showed. */
function untilExitZero(target: WaitTarget, what: string, command: string, notYet: (result: ExecResult) => string, options: WaitOptions): Promise<ExecResult> {
  return pollUntil(what, target.name, async (signal) => {
    const result = await target.exec(command, { signal })
    return result.exitCode === 0 ? { done: true, value: result } : { done: false, seen: notYet(result) }
  }, withDefaultTimeout(options))
}

function withDefaultTimeout(options: WaitOptions): WaitOptions & { timeoutMs: number } {
  return { ...options, timeoutMs: options.timeoutMs ?? defaultTimeoutMs }
}

function describeResult(result: ExecResult): string {
  const ending = result.signal ? `signal ${result.signal}` : `exit ${result.exitCode}`
  const output = `${result.stdout}${result.stderr}`.trim()
  return output ? `${ending}:\n${output}` : ending
}
