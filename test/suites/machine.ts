import { appendFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'vitest'
import { vmTest } from 'vmharness/vitest'

export const test = vmTest({
  machines: {
    box: {
      image: 'tiny',
      setupKey: process.env.SUITE_KEY,
      setup: async (vm) => {
        await vm.succeed('echo golden > /root/state')
      },
    },
  },
})

/** Two tests for one file: each notes which worker ran it on which VM, for the test that started this suite to check. */
export function workerTests(file: string): void {
  test(`worker ${file} gets its own clean machine`, async ({ box }) => {
    expect(await box.succeed('cat /root/state')).toBe('golden\n')
    await box.succeed(`echo ${file} > /root/state`)
    const out = process.env.SUITE_OUT
    if (out) await appendFile(join(out, 'workers.jsonl'), JSON.stringify({ file, pool: process.env.VITEST_POOL_ID, pid: (await box.state()).pid }) + '\n')
  })

  test(`worker ${file} starts clean again`, async ({ box }) => {
    expect(await box.succeed('cat /root/state')).toBe('golden\n')
  })
}

/** Many short tests on one machine, each checking that it starts clean and then dirtying it: for the load test. */
export function loadTests(file: string, count: number): void {
  for (let index = 1; index <= count; index++) {
    test(`load ${file} #${index} starts clean`, async ({ box }) => {
      expect((await box.succeed('cat /root/state; test -e /tmp/mark && echo dirty-tmp || true'))).toBe('golden\n')
      await box.succeed(`echo ${file}-${index} > /root/state; touch /tmp/mark`)
      const out = process.env.SUITE_OUT
      if (out) await appendFile(join(out, 'load.jsonl'), JSON.stringify({ file, index, port: box.handle.ssh?.port, pid: (await box.state()).pid }) + '\n')
    })
  }
}
