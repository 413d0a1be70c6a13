import { describe, expect, it } from 'vitest'
import { ShellSlots } from '../../src/hypervisor/libvirt/shell-slots.js'

interface Shell {
  id: number
  alive: boolean
}

function slots(usual = 3, most = 5) {
  let opened = 0
  return new ShellSlots<Shell>(() => ({ id: ++opened, alive: true }), (shell) => shell.alive, usual, most)
}

/** Marks a command as sent to the slot it picked, as LibvirtConnection does. */
function send(pool: ReturnType<typeof slots>, long: boolean) {
  const slot = pool.pick(long)
  slot.pending++
  if (long) slot.long++
  return slot
}

describe('ShellSlots', () => {
  it('uses an idle shell before opening another, and opens up to the usual count for busy ones', () => {
    const pool = slots()
    const first = send(pool, false)
    first.pending--
    expect(send(pool, false).shell.id).toBe(1)
    expect([send(pool, false), send(pool, false)].map((slot) => slot.shell.id)).toEqual([2, 3])
    // All three busy with quick commands: the next waits on the least busy, no fourth shell.
    expect(send(pool, false).shell.id).toBe(1)
    expect(pool.slots).toHaveLength(3)
  })

  it('sends a quick command to a shell without a long one, though that shell has more pending', () => {
    const pool = slots()
    send(pool, true)
    send(pool, true)
    const quick = send(pool, false)
    send(pool, false)
    expect(quick.shell.id).toBe(3)
    expect(send(pool, false).shell.id).toBe(3)
    expect(pool.slots).toHaveLength(3)
  })

  it('opens a shell beyond the usual count when every shell runs a long command, up to the most', () => {
    const pool = slots(3, 4)
    for (let i = 0; i < 3; i++) send(pool, true)
    // A long command waits on a busy shell: no extra shell for it.
    expect(send(pool, true).shell.id).toBe(1)
    expect(pool.slots).toHaveLength(3)
    // A quick one gets a fourth shell.
    const quick = send(pool, false)
    expect(quick.shell.id).toBe(4)
    // Once the fourth runs a long command too, the most is reached: a quick command waits on the least busy.
    quick.long = 1
    expect(send(pool, false).shell.id).toBe(2)
    expect(pool.slots).toHaveLength(4)
  })

  it('skips shells that died, and forgets a removed one', () => {
    const pool = slots(2, 2)
    const first = send(pool, false)
    first.pending--
    first.shell.alive = false
    const next = send(pool, false)
    expect(next.shell.id).toBe(2)
    expect(pool.remove(first)).toBe(true)
    expect(pool.remove(first)).toBe(false)
    expect(pool.slots.map((slot) => slot.shell.id)).toEqual([2])
  })
})
