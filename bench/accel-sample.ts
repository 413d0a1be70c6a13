// One tiny guest's figures under one accelerator: boot → first command (from before Vm.start to
// the end of the first command), and restore → first command (an internal restore of a snapshot
// taken after boot, then one command). Shared by the KVM lane's two sides (L1 and this host).
import { Vm } from '../src/index.js'
import { timeIt } from './stats.js'

/** TCG inside a TCG guest is very slow: no boot timeout of the harness's own should end a sample. */
const bootTimeoutMs = 900_000

export interface AccelSample {
  accel: 'kvm' | 'tcg'
  bootMs: number
  restoreMs: number
}

export async function sampleTiny(accel: 'kvm' | 'tcg'): Promise<AccelSample> {
  let vm: Vm | undefined
  try {
    const bootMs = await timeIt(async () => {
      vm = await Vm.start({ name: `figures-${accel}`, image: 'tiny', accel, bootTimeoutMs }, { onProgress: () => {} })
      await vm.succeed('true')
    })
    const started = vm as unknown as Vm
    await started.snapshot('clean')
    await started.succeed('touch /root/dirty')
    const restoreMs = await timeIt(async () => {
      await started.restore('clean')
      await started.succeed('true')
    })
    await started.fail('test -e /root/dirty')
    return { accel, bootMs, restoreMs }
  } finally {
    await vm?.destroy()
  }
}
