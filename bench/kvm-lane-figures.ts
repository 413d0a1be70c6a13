// Runs inside the KVM lane's L1 guest (scripts/kvm-lane): tiny guests under the nested KVM (and,
// with --accels kvm,tcg, under TCG in the same L1, alternating; TCG inside a TCG guest is so slow
// that one boot took over 8 minutes here), and prints one `KVM-LANE-FIGURES {json}` line.
import { acceleratorVerdict, tinyImage } from '../src/index.js'
import { findGuestKernel } from '../src/host/guest-kernel.js'
import { locateRequired } from '../src/host/requirements.js'
import { sampleTiny, type AccelSample } from './accel-sample.js'
import { countOption, median, stringOption } from './stats.js'

const rounds = countOption('rounds', 'KVM_LANE_ROUNDS', 3)
const accels = stringOption('accels', 'KVM_LANE_ACCELS', 'kvm').split(',').filter((accel): accel is 'kvm' | 'tcg' => accel === 'kvm' || accel === 'tcg')

const kernel = await findGuestKernel()
const verdict = await acceleratorVerdict({ qemu: await locateRequired('qemu-system'), kernel })
console.log(`accelerator verdict : ${verdict.accel} (${verdict.reason})`)
// Built before any clock starts: in L1 the build itself takes minutes (TCG).
await tinyImage({ onProgress: () => {} })
const samples: AccelSample[] = []
for (let round = 0; round < rounds; round++) {
  for (const accel of round % 2 === 0 ? accels : [...accels].reverse()) {
    const result = await sampleTiny(accel)
    samples.push(result)
    console.log(`round ${round + 1} ${accel}: boot → first command ${(result.bootMs / 1000).toFixed(2)} s, restore → first command ${(result.restoreMs / 1000).toFixed(2)} s`)
  }
}
const of = (accel: 'kvm' | 'tcg') => {
  const mine = samples.filter((s) => s.accel === accel)
  return mine.length ? { bootMs: median(mine.map((s) => s.bootMs)), restoreMs: median(mine.map((s) => s.restoreMs)) } : undefined
}
console.log(`KVM-LANE-FIGURES ${JSON.stringify({ rounds, verdict, kvm: of('kvm'), tcg: of('tcg'), samples })}`)
