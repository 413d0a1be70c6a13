// A suite written as a user writes one, run by test/integration/packed-package.test.ts in a fresh
// project that installed the packed vmharness tarball: it imports nothing but the package's names.
import { describe, expect, it } from 'vitest'
import { CleanMachine, isVmHarnessError, Vm } from 'vmharness'
import { vmTest } from 'vmharness/vitest'

const setup = (vm: Vm) => vm.succeed('echo golden > /root/state')
const test = vmTest({ machines: { box: { image: 'tiny', pool: 0, setup } } })

describe.sequential('vmTest from the package', () => {
  test('runs a command and changes the machine', async ({ box }) => {
    expect(await box.succeed('cat /root/state')).toBe('golden\n')
    await box.succeed('echo dirty > /root/state')
  })

  test('starts clean after a rollback', async ({ box }) => {
    expect(await box.succeed('cat /root/state')).toBe('golden\n')
  })
})

// The same machine without vitest's fixtures, as the README shows: new CleanMachine(name, config).
it('CleanMachine from the package hands out clean VMs, and its errors are typed', async () => {
  const machine = new CleanMachine('library', { image: 'tiny', pool: 0, setup })
  try {
    const vm = await machine.acquire()
    await vm.succeed('echo dirty > /root/state')
    machine.release(vm)
    const again = await machine.acquire()
    expect(await again.succeed('cat /root/state')).toBe('golden\n')
    const failure = await again.succeed('exit 3').catch((error: unknown) => error)
    expect(isVmHarnessError(failure)).toBe(true)
  } finally {
    await machine.close()
  }
})
