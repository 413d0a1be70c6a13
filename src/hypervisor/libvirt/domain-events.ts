import { spawn, type ChildProcess } from 'node:child_process'
import { lineSplitter } from '../../common/line-splitter.js'

const running = new Set<ChildProcess>()
let exitHook = false

/** The event streams end with this process (virsh would keep waiting for its next event). */
function killAtExit(child: ChildProcess): void {
  if (!exitHook) process.once('exit', () => running.forEach((c) => c.kill('SIGKILL')))
  exitHook = true
  running.add(child)
  child.once('close', () => running.delete(child))
}

export interface LifecycleEvent {
  /** libvirt's word: Started, Suspended, Resumed, Stopped, Shutdown, Crashed, … */
  event: string
  /** Its detail: Destroyed, Saved, FromSnapshot, Shutdown, Failed, … */
  detail: string
}

/**
 * Lifecycle events of every domain on one host, from one long-running `virsh event --loop`: how
 * the backend learns that a guest powered off or QEMU died, without polling. If the daemon
 * restarts, the stream ends and is opened again.
 */
export class DomainEvents {
  private child: ChildProcess | undefined
  private closed = false
  private readonly listeners = new Map<string, (event: LifecycleEvent) => void>()

  constructor(
    private readonly virsh: string,
    private readonly uri: string,
  ) {}

  watch(domain: string, listener: (event: LifecycleEvent) => void): void {
    this.listeners.set(domain, listener)
    this.child ??= this.open()
  }

  unwatch(domain: string): void {
    this.listeners.delete(domain)
  }

  close(): void {
    this.closed = true
    this.child?.kill('SIGKILL')
  }

  private open(): ChildProcess {
    const child = spawn(this.virsh, ['-q', '-c', this.uri, 'event', '--loop', '--event', 'lifecycle'], { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, LC_ALL: 'C' } })
    child.stdout?.on('data', lineSplitter((line) => this.dispatch(line)))
    child.on('error', () => undefined)
    child.on('close', () => {
      this.child = undefined
      if (!this.closed && this.listeners.size > 0) setTimeout(() => (this.child ??= this.open()), 1_000).unref()
    })
    child.unref()
    killAtExit(child)
    ;(child.stdout as unknown as { unref?: () => void } | null)?.unref?.()
    return child
  }

  private dispatch(line: string): void {
    const match = /^event 'lifecycle' for domain '?([^':]+)'?: (\S+)(?: (\S+))?/.exec(line.trim())
    if (!match) return
    this.listeners.get(match[1] as string)?.({ event: match[2] as string, detail: match[3] ?? '' })
  }
}
