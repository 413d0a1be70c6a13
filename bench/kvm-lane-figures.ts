// Runs inside the KVM lane's L1 guest (scripts/kvm-lane): tiny guests under the nested KVM and
// under TCG in the same L1, alternating, and prints one `KVM-LANE-FIGURES {json}` line.
// Boot → first command: from before Vm.start to the end of the first command.
// Restore → first command: an internal restore of a snapshot taken after boot, then one command.
import { acceleratorVerdict, tinyImage, Vm } from '../src/index.js'
import { findGuestKernel } from '../src/host/guest-kernel.js'
import { locateRequired } from '../src/host/requirements.js'
import { countOption, median, timeIt } from './stats.js'

const rounds = countOption('rounds', 'KVM_LANE_ROUNDS', 3)
/** TCG inside a TCG guest is very slow: no boot timeout of the harness's own should end a sample. */
const bootTimeoutMs = 900_000

interface Sample {
  accel: 'kvm' | 'tcg'
  bootMs: number
  restoreMs: number
}

async function sample(accel: 'kvm' | 'tcg'): Promise<Sample> {
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

const kernel = await findGuestKernel()
const verdict = await acceleratorVerdict({ qemu: await locateRequired('qemu-system'), kernel })
console.log(`accelerator verdict : ${verdict.accel} (${verdict.reason})`)
// Built before any clock starts: in L1 the build itself takes minutes (TCG).
await tinyImage({ onProgress: () => {} })
const samples: Sample[] = []
for (let round = 0; round < rounds; round++) {
  for (const accel of round % 2 === 0 ? (['kvm', 'tcg'] as const) : (['tcg', 'kvm'] as const)) {
    const result = await sample(accel)
    samples.push(result)
    console.log(`round ${round + 1} ${accel}: boot → first command ${(result.bootMs / 1000).toFixed(2)} s, restore → first command ${(result.restoreMs / 1000).toFixed(2)} s`)
  }
}
const of = (accel: 'kvm' | 'tcg', field: 'bootMs' | 'restoreMs') => median(samples.filter((s) => s.accel === accel).map((s) => s[field]))
const figures = {
  rounds,
  verdict,
  kvm: { bootMs: of('kvm', 'bootMs'), restoreMs: of('kvm', 'restoreMs') },
  tcg: { bootMs: of('tcg', 'bootMs'), restoreMs: of('tcg', 'restoreMs') },
  samples,
}
console.log(`KVM-LANE-FIGURES ${JSON.stringify(figures)}`)
