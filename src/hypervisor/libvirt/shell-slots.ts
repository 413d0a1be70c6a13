/** A shell with the count of commands sent to it and not yet answered, and how many of them are long. */
export interface ShellSlot<S> {
  shell: S
  pending: number
  long: number
}

/**
 * Which of a host's virsh shells a command goes to. A shell answers one command at a time, so a
 * quick command must not queue behind an upload or a save that takes minutes: it goes to a shell
 * without a long command, and when every shell has one, to a shell opened beyond the usual count.
 */
export class ShellSlots<S> {
  readonly slots: ShellSlot<S>[] = []

  constructor(
    private readonly open: () => S,
    private readonly usable: (shell: S) => boolean,
    /** Shells kept open in the usual case. */
    private readonly usual: number,
    /** Shells at most, those opened for quick commands stuck behind long ones included. */
    private readonly most: number,
  ) {}

  pick(long: boolean): ShellSlot<S> {
    const live = this.slots.filter((slot) => this.usable(slot.shell))
    const idle = live.find((slot) => slot.pending === 0)
    if (idle) return idle
    if (this.slots.length < this.usual) return this.add()
    const candidates = long ? live : live.filter((slot) => slot.long === 0)
    if (candidates.length === 0 && this.slots.length < this.most) return this.add()
    const from = candidates.length > 0 ? candidates : live.length > 0 ? live : this.slots
    return from.reduce((least, slot) => (slot.pending < least.pending ? slot : least))
  }

  remove(slot: ShellSlot<S>): boolean {
    const index = this.slots.indexOf(slot)
    if (index < 0) return false
    this.slots.splice(index, 1)
    return true
  }

  private add(): ShellSlot<S> {
    const slot = { shell: this.open(), pending: 0, long: 0 }
    this.slots.push(slot)
    return slot
  }
}
