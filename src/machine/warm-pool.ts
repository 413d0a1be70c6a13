import { availableMemoryMiB } from '../host/free-memory.js'
import type { Vm } from './vm.js'

/** What a pool holds: a VM, or a group of them that is made clean and disposed of as one. */
export interface Disposable {
  destroy(): Promise<void>
}

type Outcome<T> = { vm: T } | { error: unknown }

export interface WarmPoolOptions<T extends Disposable = Vm> {
  size: number
  /** Guest memory of one entry (all its VMs): one is added only while the host has room for it and a reserve. */
  memoryMiB: number
  /** Host memory left untouched, in MiB. */
  reserveMiB?: number
  /** Host memory available now, in MiB; the host's own figure unless given. */
  availableMiB?: () => number
  /** A new clean VM. */
  start: () => Promise<T>
  /**
   * Brings a VM the pool handed out back to the clean state, in place. Without it, used VMs are
   * never taken back: each take is replaced by a new one.
   */
  recycle?: (vm: T) => Promise<T>
}

/** QEMU's own overhead beside the guest's RAM (measured: ~100 MiB for a 256 MiB tiny guest). */
export const perVmOverheadMiB = 128

/**
 * VMs made clean ahead of need: while a test runs, the next clean VM comes up in the background,
 * and `take` hands it over when the test ends. With `recycle`, the VM a test used comes back and
 * is made clean again while the next test runs, so `size` VMs wait beside the one in use.
 * Never holds more VMs than free memory allows.
 */
export class WarmPool<T extends Disposable = Vm> {
  private readonly ready: Promise<Outcome<T>>[] = []
  /** Handed out and expected back (recycling only): they count towards the pool's size. */
  private readonly lent = new Set<T>()
  private closed = false

  constructor(private readonly options: WarmPoolOptions<T>) {}

  /** Starts VMs until the pool is full or the host has no room for another. */
  fill(): void {
    const target = this.options.size + (this.options.recycle ? 1 : 0)
    while (!this.closed && this.ready.length + this.lent.size < target && this.roomForOneMore()) {
      this.ready.push(settle(this.options.start()))
    }
  }

  /** The oldest VM in the pool once it is clean; undefined when the pool is empty. */
  async take(): Promise<T | undefined> {
    const next = this.ready.shift()
    // A recycling pool refills only once the VM counts as lent, or it would start one too many.
    if (!this.options.recycle || !next) this.fill()
    if (!next) return undefined
    const outcome = await next
    if ('error' in outcome) {
      this.fill()
      throw outcome.error
    }
    if (this.options.recycle) {
      this.lent.add(outcome.vm)
      this.fill()
    }
    return outcome.vm
  }

  /** Takes back a VM it handed out, to be made clean again; false when the caller must dispose of it. */
  takeBack(vm: T): boolean {
    if (this.closed || !this.options.recycle || !this.lent.delete(vm)) return false
    this.ready.push(settle(this.options.recycle(vm)))
    return true
  }

  /** A VM handed out will not come back (kept for debugging, say): another is started in its place. */
  forget(vm: T): void {
    if (this.lent.delete(vm)) this.fill()
  }

  get size(): number {
    return this.ready.length
  }

  async close(): Promise<void> {
    this.closed = true
    this.lent.clear()
    const pending = this.ready.splice(0)
    await Promise.all(pending.map(async (entry) => {
      const outcome = await entry
      if ('vm' in outcome) await outcome.vm.destroy()
    }))
  }

  private roomForOneMore(): boolean {
    return (this.options.availableMiB ?? availableMemoryMiB)() - (this.options.reserveMiB ?? 512) >= this.options.memoryMiB + perVmOverheadMiB
  }
}

function settle<T>(vm: Promise<T>): Promise<Outcome<T>> {
  return vm.then((ready) => ({ vm: ready }), (error: unknown) => ({ error }))
}
