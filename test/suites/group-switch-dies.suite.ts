import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { expect } from 'vitest'
import { test } from './group.js'

let killedSwitch: string | undefined

test("loses its network's switch mid-test", async ({ server, client, networks }) => {
  await client.succeed('ping -c 1 -W 5 server')
  process.kill(Number(await readFile(join(dirname(networks.lan!.switchSocket), 'vde.pid'), 'utf8')), 'SIGKILL')
  await networks.lan!.exited
  killedSwitch = networks.lan!.switchSocket
  expect((await client.exec('ping -c 1 -W 2 server')).exitCode).not.toBe(0)
  expect(await server.succeed('hostname')).toBe('server\n')
})

test('the next test gets the group whole again, on a switch of its own', async ({ server, client, networks }) => {
  expect(killedSwitch).toBeDefined()
  expect(networks.lan!.switchSocket).not.toBe(killedSwitch)
  networks.lan!.assertAlive()
  await client.succeed('ping -c 1 -W 5 server')
  await server.succeed('ping -c 1 -W 5 client')
})
