// Boot and restore figures for the two built images, side by side: cold boot → first SSH command
// (for Debian that includes cloud-init's first boot), and restore from an external snapshot →
// first SSH command (a clone, as the golden cache and warm pool make them). Runs alternate
// between the images so that the machine's noise falls on both alike.
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { debianImage } from '../src/images/debian-image.js'
import { tinyImage } from '../src/images/tiny-image.js'
import { Vm } from '../src/machine/vm.js'
import type { VmSpec } from '../src/spec/vm-spec.js'
import { median } from './stats.js'

const boots = Number(process.env.BENCH_BOOTS ?? 3)
const restores = Number(process.env.BENCH_RESTORES ?? 6)
const images: Record<string, VmSpec> = { tiny: { image: 'tiny' }, debian: { image: 'debian' } }

interface Figures {
  bootMs: number[]
  restoreMs: number[]
  stateMiB: number
}

async function coldBoot(spec: VmSpec): Promise<number> {
  const started = performance.now()
  const vm = await Vm.start(spec, { onProgress: () => undefined })
  await vm.succeed('true')
  const elapsed = performance.now() - started
  await vm.destroy()
  return elapsed
}

async function restoreOnce(spec: VmSpec, snapshotDir: string): Promise<number> {
  const started = performance.now()
  const vm = await Vm.start({ ...spec, image: undefined, restoreFrom: snapshotDir }, { onProgress: () => undefined })
  await vm.succeed('true')
  const elapsed = performance.now() - started
  await vm.destroy()
  return elapsed
}

async function main(): Promise<void> {
  await tinyImage()
  await debianImage({ onProgress: (line) => process.stderr.write(`${line}\n`) })
  const figures: Record<string, Figures> = {}
  for (const name of Object.keys(images)) figures[name] = { bootMs: [], restoreMs: [], stateMiB: 0 }
  for (let round = 0; round < boots; round++) {
    for (const [name, spec] of Object.entries(images)) {
      const ms = await coldBoot(spec)
      figures[name]?.bootMs.push(ms)
      process.stderr.write(`cold boot ${name} #${round + 1}: ${(ms / 1000).toFixed(1)} s\n`)
    }
  }
  const scratch = await mkdtemp(join(tmpdir(), 'vmharness-bench-'))
  try {
    const snapshots: Record<string, string> = {}
    for (const [name, spec] of Object.entries(images)) {
      const vm = await Vm.start(spec, { onProgress: () => undefined })
      const info = await vm.snapshot('bench', { kind: 'external', dir: join(scratch, name) })
      await vm.destroy()
      snapshots[name] = info.path ?? ''
      ;(figures[name] as Figures).stateMiB = (await stat(join(info.path ?? '', 'state.bin'))).size / 1024 / 1024
    }
    for (let round = 0; round < restores; round++) {
      for (const [name, spec] of Object.entries(images)) {
        const ms = await restoreOnce(spec, snapshots[name] ?? '')
        figures[name]?.restoreMs.push(ms)
        process.stderr.write(`restore ${name} #${round + 1}: ${(ms / 1000).toFixed(2)} s\n`)
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
  const tiny = figures.tiny as Figures
  const debian = figures.debian as Figures
  const line = (label: string, tinyMs: number, debianMs: number) =>
    `${label.padEnd(34)} tiny ${(tinyMs / 1000).toFixed(2).padStart(6)} s   debian ${(debianMs / 1000).toFixed(2).padStart(6)} s   debian/tiny ${(debianMs / tinyMs).toFixed(1)}x`
  console.log(`guest images, median of ${boots} cold boots and ${restores} restores each (TCG unless KVM works)`)
  console.log(line('cold boot -> first SSH command', median(tiny.bootMs), median(debian.bootMs)))
  console.log(line('restore -> first SSH command', median(tiny.restoreMs), median(debian.restoreMs)))
  console.log(`saved RAM state: tiny ${tiny.stateMiB.toFixed(0)} MiB, debian ${debian.stateMiB.toFixed(0)} MiB`)
  console.log(`restore instead of boot: tiny ${(median(tiny.bootMs) / median(tiny.restoreMs)).toFixed(1)}x faster, debian ${(median(debian.bootMs) / median(debian.restoreMs)).toFixed(1)}x faster`)
}

await main()
