import { availableMemoryMiB } from '../host/free-memory.js'
import type { Vm } from './vm.js'

type Outcome = { vm: Vm } | { error: unknown }

export interface WarmPoolOptions {
  size: number
  /** Guest memory of one VM: a VM is added only while the host has room for it and a reserve. */
  memoryMiB: number
  /** Host memory left untouched, in MiB. */
  reserveMiB?: number
  start: () => Promise<Vm>
}

/** QEMU's own overhead beside the guest's RAM (measured: ~100 MiB for a 256 MiB tiny guest). */
const perVmOverheadMiB = 128

/**
 * VMs restored ahead of need: while a test runs, the next clean VM comes up in the background,
 * and `take` hands it over when the test ends. Never holds more VMs than free memory allows.
 */
export class WarmPool {
  private readonly ready: Promise<Outcome>[] = []
  private closed = false

  constructor(private readonly options: WarmPoolOptions) {}

  /** Starts VMs until the pool is full or the host has no room for another. */
  fill(): void {
    while (!this.closed && this.ready.length < this.options.size && this.roomForOneMore()) {
      this.ready.push(this.options.start().then((vm) => ({ vm }), (error: unknown) => ({ error })))
    }
  }

  /** The oldest VM in the pool once it is up (a refill starts at once); undefined when the pool is empty. */
  async take(): Promise<Vm | undefined> {
    const next = this.ready.shift()
    this.fill()
    if (!next) return undefined
    const outcome = await next
    if ('error' in outcome) throw outcome.error
    return outcome.vm
  }

  get size(): number {
    return this.ready.length
  }

  async close(): Promise<void> {
    this.closed = true
    const pending = this.ready.splice(0)
    await Promise.all(pending.map(async (entry) => {
      const outcome = await entry
      if ('vm' in outcome) await outcome.vm.destroy()
    }))
  }

  private roomForOneMore(): boolean {
    return availableMemoryMiB() - (this.options.reserveMiB ?? 512) >= this.options.memoryMiB + perVmOverheadMiB
  }
}
