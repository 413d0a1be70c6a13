import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'vitest'
import type { Vm } from 'vmharness'
import { test } from './group.js'

/** The MAC and addresses of the guest's NIC on 'lan', as the guest itself shows them. */
async function lanIdentity(vm: Vm): Promise<{ mac: string; ipv4: string; ipv6: string }> {
  const nic = (await vm.succeed("ip -o -4 addr show | awk '$4 ~ /^192[.]168[.]1[.]/ { print $2 }'")).trim()
  const shown = await vm.succeed(`ip -o addr show dev ${nic}`)
  return {
    mac: (await vm.succeed(`cat /sys/class/net/${nic}/address`)).trim(),
    ipv4: /inet (192\.168\.1\.\d+)\//.exec(shown)?.[1] ?? `(none in: ${shown})`,
    ipv6: /inet6 (2001:db8:1::\d+)\//.exec(shown)?.[1] ?? `(none in: ${shown})`,
  }
}

test('a group test that fails on purpose', async ({ server, client }) => {
  await server.succeed('echo server-before-failure')
  await client.succeed('echo client-before-failure')
  await client.exec('exit 4')
  const observed = { server: await lanIdentity(server), client: await lanIdentity(client) }
  await writeFile(join(process.env.SUITE_OUT ?? '.', 'observed-lan.json'), JSON.stringify(observed))
  expect(await client.succeed('hostname')).toBe('not the client\n')
})
