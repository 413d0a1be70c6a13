import { randomBytes } from 'node:crypto'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { LibvirtError } from './libvirt-error.js'

/** What interactive virsh prints before each line it reads (and then the line itself). */
const prompt = 'virsh # '

/**
 * One interactive `virsh` connected to one URI, fed a command at a time. Over qemu+ssh:// every
 * one-shot virsh opens an SSH connection (0.9 s each, measured); a shell opens it once and then
 * answers in milliseconds. Each command is followed by `echo` to stdout and `echo --err` to stderr:
 * virsh runs commands in order, so once both markers are back, everything the command printed on
 * either stream has arrived, and an `error:` line before the stderr marker means it failed.
 */
export class VirshShell {
  private readonly child: ChildProcessWithoutNullStreams
  private stdout = ''
  private stderr = ''
  private ended: Error | undefined
  private waiter: (() => void) | undefined
  private queue: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly virsh: string,
    readonly uri: string,
  ) {
    this.child = spawn(virsh, ['-q', '-c', uri], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } })
    this.child.stdout.setEncoding('utf8').on('data', (chunk: string) => this.arrived(() => (this.stdout += chunk)))
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => this.arrived(() => (this.stderr += chunk)))
    this.child.stdin.on('error', () => undefined)
    this.child.on('error', (error) => this.arrived(() => (this.ended = error)))
    this.child.on('close', (code, signal) => this.arrived(() => (this.ended ??= new Error(`virsh ended (${signal ?? `exit code ${code}`})`))))
    this.hold(false)
  }

  get alive(): boolean {
    return this.ended === undefined
  }

  /** Runs one virsh command; its stdout, or a LibvirtError with what virsh printed on stderr. */
  run(args: readonly string[], timeoutMs: number): Promise<string> {
    const next = this.queue.then(() => this.runNow(args, timeoutMs))
    this.queue = next.catch(() => undefined)
    return next
  }

  close(): void {
    if (this.alive) this.child.stdin.end('quit\n')
    setTimeout(() => this.child.kill('SIGKILL'), 2_000).unref()
  }

  private async runNow(args: readonly string[], timeoutMs: number): Promise<string> {
    this.hold(true)
    try {
      return await this.exchange(args, timeoutMs)
    } finally {
      this.hold(false)
    }
  }

  /** An idle shell does not keep the process alive; one with a command under way does. */
  private hold(busy: boolean): void {
    for (const handle of [this.child, this.child.stdout, this.child.stderr, this.child.stdin] as { ref?: () => void; unref?: () => void }[]) {
      if (busy) handle.ref?.()
      else handle.unref?.()
    }
  }

  private async exchange(args: readonly string[], timeoutMs: number): Promise<string> {
    if (this.ended) throw new LibvirtError(`virsh for ${this.uri} is gone: ${this.ended.message}${this.stderr.trim() ? ` (${this.stderr.trim().replace(/\s+/g, ' ')})` : ''}`, args)
    const marker = `vmharness-done-${randomBytes(6).toString('hex')}`
    this.stdout = ''
    this.stderr = ''
    this.child.stdin.write(`${args.map(quoteVirshWord).join(' ')}\necho ${marker}\necho --err ${marker}\n`)
    const done = () => this.stdout.includes(`${prompt}echo --err ${marker}\n`) && this.stderr.includes(`error: ${marker}\n`)
    const finished = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => settle(false), timeoutMs)
      const settle = (ok: boolean) => {
        clearTimeout(timer)
        this.waiter = undefined
        resolve(ok)
      }
      this.waiter = () => {
        if (done()) settle(true)
        else if (this.ended) settle(false)
      }
      this.waiter()
    })
    if (!finished) {
      // virsh ended under the command (its stderr says why), or the shell's state is unknown now (a command still running): not reused.
      const ended = this.ended as Error | undefined
      if (ended) throw new LibvirtError(`virsh for ${this.uri} is gone: ${ended.message} (${this.stderr.trim().replace(/\s+/g, ' ')})`, args, this.stderr)
      this.ended = new Error(`'virsh ${args.join(' ')}' gave no answer within ${timeoutMs} ms`)
      this.child.kill('SIGKILL')
      throw new LibvirtError(this.ended.message, args, this.stderr)
    }
    // virsh echoes each line it reads after its prompt: the output lies between the command's echo and the marker's.
    const output = this.stdout.slice(this.stdout.indexOf('\n') + 1, this.stdout.indexOf(`${prompt}echo ${marker}\n`))
    // After a daemon restart virsh reconnects by itself and says so on stderr before running the command: not a failure.
    const errors = this.stderr
      .slice(0, this.stderr.indexOf(`error: ${marker}\n`))
      .split('\n')
      .filter((line) => !/^error: (Reconnected to the hypervisor|Disconnected from .* due to )/.test(line))
      .join('\n')
      .trim()
    if (/^error: /m.test(errors)) throw new LibvirtError(errors.replace(/^error: /gm, '').trim(), args, errors)
    return output
  }

  private arrived(update: () => void): void {
    update()
    this.waiter?.()
  }
}

/**
 * A word as virsh's own command parser reads it: bare when it holds nothing special, else in
 * single quotes (virsh takes everything inside them literally; a quote itself is closed, escaped
 * and reopened). Newlines cannot be passed, and virsh's readline takes other control characters as
 * editing keys (a tab completes, Ctrl-A goes to the line's start, Ctrl-U erases it), even quoted:
 * so all of them are refused.
 */
export function quoteVirshWord(word: string): string {
  if (/[\x00-\x1f\x7f]/.test(word)) throw new LibvirtError('a virsh argument may not hold a newline, NUL or other control character', [word])
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word
  return `'${word.replaceAll("'", `'\\''`)}'`
}
