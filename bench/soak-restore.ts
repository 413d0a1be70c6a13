// On demand, not in CI: restore and reconnect one VM many times in a row, counting every cycle
// whose SSH reconnect or first command failed. `npm run soak` (SOAK_CYCLES, default 500;
// SOAK_KIND internal|external, default external).
import { Vm } from '../src/machine/vm.js'
import { median } from './stats.js'

const cycles = Number(process.env.SOAK_CYCLES ?? 500)
const kind = process.env.SOAK_KIND === 'internal' ? 'internal' : 'external'

async function main(): Promise<number> {
  await using vm = await Vm.start({ image: 'tiny', name: 'soak' })
  await vm.succeed('echo clean > /root/state')
  await vm.snapshot('clean', { kind })
  const failures: string[] = []
  const cycleMs: number[] = []
  for (let cycle = 1; cycle <= cycles; cycle++) {
    const started = performance.now()
    try {
      await vm.restore('clean')
      const state = await vm.succeed('cat /root/state; echo dirty > /root/state')
      if (state !== 'clean\n') throw new Error(`not clean after the restore: ${JSON.stringify(state)}`)
    } catch (error) {
      failures.push(`cycle ${cycle}: ${(error as Error).message.split('\n')[0]}`)
    }
    cycleMs.push(performance.now() - started)
    if (cycle % 50 === 0) process.stderr.write(`${cycle}/${cycles} cycles, ${failures.length} failed, median ${(median(cycleMs) / 1000).toFixed(2)} s\n`)
  }
  console.log(`soak: ${cycles} ${kind} restore + reconnect + command cycles, ${failures.length} failed, median cycle ${(median(cycleMs) / 1000).toFixed(2)} s, slowest ${(Math.max(...cycleMs) / 1000).toFixed(2)} s`)
  for (const failure of failures.slice(0, 20)) console.log(`  ${failure}`)
  return failures.length === 0 ? 0 : 1
}

process.exitCode = await main()
