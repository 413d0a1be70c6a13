import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { runDir } from '../../src/host/run-dir.js'
import { test } from './group.js'

test('runs a group until the run is killed', async ({ server, client, networks }) => {
  const running = {
    qemuPids: [(await server.state()).pid, (await client.state()).pid],
    switchSocket: networks.lan!.switchSocket,
    runDir: (await runDir()).path,
    worker: process.pid,
  }
  await writeFile(join(process.env.SUITE_OUT ?? '.', 'running-group.json'), JSON.stringify(running))
  await sleep(120_000)
})
