import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CleanMachine } from '../../src/machine/clean-machine.js'
import { Vm } from '../../src/machine/vm.js'
import { clockErrorMs, randomOutput, readGuestClock, type ClockReading } from '../helpers/guest-freshness.js'

// A clock set from the host lands within this of the host's window around a reading.
const clockToleranceMs = 100

async function expectClockSet(vm: Vm): Promise<void> {
  expectClockWithin(await readGuestClock(vm))
}

function expectClockWithin(reading: ClockReading): void {
  expect(Math.abs(clockErrorMs(reading)), `guest clock outside the host's window by ${clockErrorMs(reading).toFixed(1)} ms (window ${(reading.receivedMs - reading.sentMs).toFixed(1)} ms)`).toBeLessThan(clockToleranceMs)
}

describe('a restored guest is fresh: its own random output and the host clock', () => {
  let vm: Vm

  beforeAll(async () => {
    vm = await Vm.start({ image: 'tiny', name: 'fresh' })
  })

  afterAll(async () => {
    await vm?.destroy()
  })

  it('a booted guest has its clock set to within 0.1 s', async () => {
    await expectClockSet(vm)
  })

  it('no two restores of one internal snapshot see the same random output, and each sets the clock', async () => {
    await vm.snapshot('same-state')
    const seen: string[] = []
    const clocks: ClockReading[] = []
    for (let round = 0; round < 5; round++) {
      await vm.restore('same-state')
      seen.push(await randomOutput(vm))
      clocks.push(await readGuestClock(vm))
    }
    expect(new Set(seen).size).toBe(seen.length)
    clocks.forEach(expectClockWithin)
  })

  it('the guest clock keeps time after a restore: still within 0.1 s five seconds later', async () => {
    await vm.restore('same-state')
    await sleep(5_000)
    await expectClockSet(vm)
  })

  it('two clones of one external snapshot, started at once, see different random output', async () => {
    const saved = await vm.snapshot('clone-source', { kind: 'external' })
    // Time passes between the save and the clones, so a clone whose clock was not set lies behind by it.
    await sleep(3_000)
    const clones = await Promise.all([1, 2].map((n) => Vm.start({ name: `clone-${n}`, restoreFrom: saved.path })))
    try {
      const outputs = await Promise.all(clones.map((clone) => randomOutput(clone)))
      const clocks = [await readGuestClock(clones[0]), await readGuestClock(clones[1])]
      expect(outputs[0]).not.toBe(outputs[1])
      clocks.forEach(expectClockWithin)
    } finally {
      await Promise.all(clones.map((clone) => clone.destroy()))
    }
  })
})

describe('clean machines from one golden snapshot, test after test', () => {
  const machine = new CleanMachine('fresh-pool', { image: 'tiny', pool: 1, setupKey: randomBytes(6).toString('hex') })

  afterAll(async () => {
    await machine.close()
    if (machine.goldenSnapshotDir) await rm(dirname(machine.goldenSnapshotDir), { recursive: true, force: true })
  })

  it('six clean VMs in a row see six different random outputs; one that waited in the pool has the clock set', async () => {
    const seen: string[] = []
    const clocks: ClockReading[] = []
    for (let round = 0; round < 6; round++) {
      const vm = await machine.acquire()
      seen.push(await randomOutput(vm))
      clocks.push(await readGuestClock(vm))
      machine.release(vm)
      // The next VM is reloaded now and then waits in the pool.
      if (round === 3) await sleep(5_000)
    }
    expect(new Set(seen).size).toBe(seen.length)
    clocks.forEach(expectClockWithin)
  })
})
