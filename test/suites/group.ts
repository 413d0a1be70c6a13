import { appendFile, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'vitest'
import type { Vm } from 'vmharness'
import { vmTest } from 'vmharness/vitest'

// Two tiny machines and no `networks`: one group on the default network 'lan'. No setup and no
// setupKey, so that their golden snapshot is reused from run to run rather than piling up.
export const test = vmTest({
  machines: {
    server: { image: 'tiny' },
    client: { image: 'tiny' },
  },
})

const out = () => process.env.SUITE_OUT ?? '.'

/** Resolves once every file in `files` has said it is ready, so that their groups are up at the same time. */
async function meet(file: string, files: string[], timeoutMs: number): Promise<void> {
  await writeFile(join(out(), `${file}.ready`), '')
  const deadline = Date.now() + timeoutMs
  for (const other of files) {
    while (!(await readFile(join(out(), `${other}.ready`)).then(() => true, () => false))) {
      if (Date.now() > deadline) throw new Error(`group ${other} never came up beside group ${file}`)
      await sleep(200)
    }
  }
}

/** The marker `to` serves, fetched by `from` at `address`; `to` listens again only a moment after each answer. */
async function fetchMarker(from: Vm, to: Vm, address: string): Promise<string> {
  await to.waitForOpenPort(7000)
  return from.succeed(`nc -w 5 ${address} 7000 </dev/null`)
}

/**
 * A test for one of two files that run at once, each with the same group (same MACs, same
 * 192.168.1.x): each member serves its file's marker, and the other fetches it by name, again
 * and again while both groups are up. A frame that crossed to the other file's group would
 * bring back that file's marker, or no answer.
 */
export function isolatedGroupTest(file: string, files: string[]): void {
  test(`group ${file} talks only to its own members`, async ({ server, client, networks }) => {
    for (const vm of [server, client]) {
      await vm.succeed(`echo "${file} from $(hostname)" > /root/marker`)
      await vm.succeed('(while true; do nc -l -p 7000 < /root/marker; done) >/dev/null 2>&1 &')
      await vm.waitForOpenPort(7000)
    }
    await meet(file, files, 120_000)
    for (let round = 0; round < 5; round++) {
      await client.succeed('ping -c 1 -W 5 server')
      expect(await fetchMarker(client, server, 'server')).toBe(`${file} from server\n`)
      expect(await fetchMarker(server, client, 'client')).toBe(`${file} from client\n`)
      expect(await fetchMarker(server, client, client.guestIp6())).toBe(`${file} from client\n`)
    }
    const note = { file, pool: process.env.VITEST_POOL_ID, pid: process.pid, switchSocket: networks.lan!.switchSocket, addresses: [await server.guestIp(), await client.guestIp()] }
    await appendFile(join(out(), 'groups.jsonl'), JSON.stringify(note) + '\n')
  })
}
