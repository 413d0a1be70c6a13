import { appendFile } from 'node:fs/promises'
import { join } from 'node:path'
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

/** Notes which worker ran a test on which VM, for the test that started this suite to check. */
export async function noteWorker(file: string, pid: number | undefined): Promise<void> {
  const out = process.env.SUITE_OUT
  if (out) await appendFile(join(out, 'workers.jsonl'), JSON.stringify({ file, pool: process.env.VITEST_POOL_ID, pid }) + '\n')
}
