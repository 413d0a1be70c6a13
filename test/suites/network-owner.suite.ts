import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { it } from 'vitest'
import { runDir } from '../../src/host/run-dir.js'
import { Network } from '../../src/index.js'

// Run by test/integration/network-switch.test.ts through test/suites/plain.vitest.config.ts, then SIGKILLed: no VMs.
it('holds a network until this process is killed', async () => {
  const network = await Network.create({ name: 'doomed' })
  const switchPid = Number(await readFile(join(dirname(network.switchSocket), 'vde.pid'), 'utf8'))
  const running = { switchPid, worker: process.pid, runDir: (await runDir()).path }
  await writeFile(join(process.env.SUITE_OUT ?? '.', 'running.json'), JSON.stringify(running))
  await sleep(120_000)
}, 130_000)
