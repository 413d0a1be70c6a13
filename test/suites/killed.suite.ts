import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from './machine.js'

test('runs until the run is killed', async ({ box }) => {
  const state = await box.state()
  await writeFile(join(process.env.SUITE_OUT ?? '.', 'running.json'), JSON.stringify({ qemuPid: state.pid, port: box.handle.ssh?.port, worker: process.pid }))
  await sleep(120_000)
})
