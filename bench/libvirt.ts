// The libvirt backend against the QEMU backend, in one run (ratios: these machines are shared and
// noisy): cold boot → first command, and restore → first command for both snapshot kinds; then
// libvirt through qemu+ssh:// (an sshd on 127.0.0.1) against libvirt on this host; and a boot with
// machine 'pc' on both backends. Runs inside
// scripts/libvirt-sandbox: `npm run bench:libvirt`. Rounds: --boot-rounds N --restore-rounds N
// (or BENCH_BOOT_ROUNDS, BENCH_RESTORE_ROUNDS); defaults 5 and 8. Backends alternate per round.
import { Vm } from '../src/machine/vm.js'
import type { SnapshotKind } from '../src/hypervisor/hypervisor.js'
import type { VmSpec } from '../src/spec/vm-spec.js'
import { countOption, median, timeIt } from './stats.js'

const bootRounds = countOption('boot-rounds', 'BENCH_BOOT_ROUNDS', 5)
const restoreRounds = countOption('restore-rounds', 'BENCH_RESTORE_ROUNDS', 8)

const local = process.env.VMHARNESS_LIBVIRT_URI
const remote = process.env.VMHARNESS_LIBVIRT_REMOTE_URI
if (!process.env.VMHARNESS_LIBVIRT_SANDBOX || !local || !remote) {
  console.error('bench/libvirt: run it inside scripts/libvirt-sandbox (npm run bench:libvirt does)')
  process.exit(2)
}

const targets = {
  qemu: { image: 'tiny', backend: 'qemu' },
  'libvirt (this host)': { image: 'tiny', backend: 'libvirt', libvirtUri: local },
  'libvirt (qemu+ssh://)': { image: 'tiny', backend: 'libvirt', libvirtUri: remote },
} satisfies Record<string, VmSpec>
type Target = keyof typeof targets

function say(line: string): void {
  process.stdout.write(`${line}\n`)
}

async function boot(spec: VmSpec): Promise<number> {
  let vm: Vm | undefined
  const ms = await timeIt(async () => {
    vm = await Vm.start({ ...spec, name: 'bench' }, { onProgress: () => undefined })
    await vm.exec('true')
  })
  await vm?.destroy()
  return ms
}

/** One VM per target with a snapshot of `kind`; each round restores it and runs `true`. */
async function restores(kind: SnapshotKind): Promise<Record<Target, number[]>> {
  const vms = {} as Record<Target, Vm>
  const times = {} as Record<Target, number[]>
  try {
    for (const target of Object.keys(targets) as Target[]) {
      vms[target] = await Vm.start({ ...targets[target], name: `bench-${kind}` }, { onProgress: () => undefined })
      await vms[target].snapshot('bench', { kind })
      times[target] = []
    }
    for (let round = 0; round < restoreRounds; round++) {
      for (const target of Object.keys(targets) as Target[]) {
        const vm = vms[target] as Vm
        await vm.succeed('echo dirty > /root/dirty')
        times[target].push(
          await timeIt(async () => {
            await vm.restore('bench')
            await vm.exec('true')
          }),
        )
        await vm.fail('test -e /root/dirty')
      }
    }
  } finally {
    for (const vm of Object.values(vms)) await vm.destroy()
  }
  return times
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`
}

function row(label: string, times: Record<Target, number[]>): void {
  const qemu = median(times.qemu)
  const here = median(times['libvirt (this host)'])
  const far = median(times['libvirt (qemu+ssh://)'])
  say(`| ${label} | ${seconds(qemu)} | ${seconds(here)} | ${(here / qemu).toFixed(2)}x | ${seconds(far)} | ${(far / here).toFixed(2)}x |`)
}

// A first boot per target uploads the image to the pool (once per content) and warms caches: not counted.
for (const target of Object.keys(targets) as Target[]) await boot(targets[target])
const boots = Object.fromEntries(Object.keys(targets).map((t) => [t, [] as number[]])) as Record<Target, number[]>
for (let round = 0; round < bootRounds; round++) for (const target of Object.keys(targets) as Target[]) boots[target].push(await boot(targets[target]))
// The same boot with machine 'pc' on both backends (i440fx on each; the QEMU backend boots it
// through SeaBIOS, libvirt through qboot): what libvirt adds on an equal machine type, without
// the QEMU backend's microvm against libvirt's q35.
const pcTargets = { qemu: { ...targets.qemu, machine: 'pc' }, libvirt: { ...targets['libvirt (this host)'], machine: 'pc' } } satisfies Record<string, VmSpec>
const pcBoots = { qemu: [] as number[], libvirt: [] as number[] }
for (let round = 0; round < bootRounds; round++) for (const target of ['qemu', 'libvirt'] as const) pcBoots[target].push(await boot(pcTargets[target]))
const internal = await restores('internal')
const external = await restores('external')

say(`\nlibvirt bench: ${bootRounds} boots and ${restoreRounds} restores per target, medians (tiny image, TCG)`)
say('| measure | qemu backend | libvirt, this host | libvirt / qemu | libvirt, qemu+ssh:// | remote / local |')
say('|---|---|---|---|---|---|')
row('cold boot → first command', boots)
row('restore → first command (internal snapshot)', internal)
row('restore → first command (saved state)', external)
const pcQemu = median(pcBoots.qemu)
const pcLibvirt = median(pcBoots.libvirt)
say(`| cold boot → first command, machine 'pc' on both | ${seconds(pcQemu)} | ${seconds(pcLibvirt)} | ${(pcLibvirt / pcQemu).toFixed(2)}x | | |`)
for (const [label, times] of [['boot', boots], ['internal', internal], ['external', external], ['boot (pc)', pcBoots]] as const) {
  say(`${label}: ${Object.entries(times).map(([t, v]) => `${t} [${(v as number[]).map((ms) => (ms / 1000).toFixed(2)).join(', ')}]`).join('; ')}`)
}
