import { describe, expect, it } from 'vitest'
import { vmTest } from '../../fixtures/vm-test.js'
import { Vm } from '../../src/machine/vm.js'
import { Network } from '../../src/network/network.js'

// Two tiny machines: left without `networks`, they share one network named 'lan' and are a group.
// server's setup waits for a service that client's setup starts: setups run one by one in
// declaration order would never finish.
const test = vmTest({
  machines: {
    server: {
      image: 'tiny',
      setup: async (vm) => {
        await vm.waitUntilSucceeds('nc -w 2 client 7100 </dev/null > /root/met && test -s /root/met', { timeoutMs: 60_000 })
        await vm.succeed('echo golden > /root/state')
      },
    },
    client: {
      image: 'tiny',
      setup: async (vm) => {
        await vm.succeed('(echo from-client-setup | nc -l -p 7100 >/dev/null 2>&1 &)')
        await vm.succeed('echo golden > /root/state')
      },
    },
  },
})

/** The carrier flag of the guest's NIC on its first network, found by its MAC. */
async function carrier(vm: Vm): Promise<string> {
  const mac = vm.networks[0]?.mac
  return (await vm.succeed(`for dev in /sys/class/net/*; do [ "$(cat $dev/address)" = "${mac}" ] && cat $dev/carrier; done; true`)).trim()
}

/** An established TCP connection on port 7001 (0x1B59) in the guest's tables (nc listens on IPv6, IPv4 mapped). */
const established7001 = "cat /proc/net/tcp /proc/net/tcp6 | grep -q ':1B59 [0-9A-F:]* 01 '"

const reaches = async (from: Vm, to: string) => (await from.exec(`ping -c 1 -W 2 ${to}`)).exitCode === 0

describe('machines on a network', () => {
  test("the members' setups ran side by side: server's waited for a service client's started", async ({ server }) => {
    expect(await server.succeed('cat /root/met')).toBe('from-client-setup\n')
  })

  test('ping each other by name over IPv4 and IPv6', async ({ server, client }) => {
    expect(await client.succeed('grep -w server /etc/hosts')).toContain('192.168.1.1')
    expect(await client.succeed('grep -w server /etc/hosts')).toContain('2001:db8:1::1')
    await client.succeed('ping -c 1 -W 5 server')
    await server.succeed('ping -c 1 -W 5 client')
    await client.succeed('ping -6 -c 1 -W 5 server')
    await server.succeed(`ping -6 -c 1 -W 5 ${client.guestIp6()}`)
  })

  test("guestIp() is the address the guest shows in 'ip addr'", async ({ server, client }) => {
    expect(await server.guestIp()).toBe('192.168.1.1')
    expect(await client.guestIp('lan')).toBe('192.168.1.2')
    for (const vm of [server, client]) {
      const shown = await vm.succeed('ip -o addr show')
      expect(shown).toContain(`inet ${await vm.guestIp()}/24`)
      expect(shown).toContain(`inet6 ${vm.guestIp6()}/64`)
    }
  })

  test('a TCP server in one machine is reached from the other, by name', async ({ server, client }) => {
    await server.succeed('(while true; do echo "served by $(hostname)" | nc -l -p 7000; done) >/dev/null 2>&1 &')
    await server.waitForOpenPort(7000)
    expect(await client.succeed('nc -w 5 server 7000 </dev/null')).toBe('served by server\n')
  })

  test('block takes the link down (the guest sees no carrier, nothing passes either way); unblock brings it back', async ({ server, client }) => {
    expect(await reaches(client, 'server')).toBe(true)
    await client.block()
    expect(await carrier(client)).toBe('0')
    expect(await reaches(client, 'server')).toBe(false)
    expect(await reaches(server, 'client')).toBe(false)
    await client.unblock()
    expect(await carrier(client)).toBe('1')
    await client.waitUntilSucceeds('ping -c 1 -W 2 server', { timeoutMs: 20_000 })
    expect(await reaches(server, 'client')).toBe(true)
  })

  test('a partition drops traffic between the groups silently (carrier stays up); heal ends it', async ({ server, client, networks }) => {
    expect(await reaches(client, 'server')).toBe(true)
    await networks.lan.partition(['server'], ['client'])
    expect(await carrier(client)).toBe('1')
    expect(await reaches(client, 'server')).toBe(false)
    expect(await reaches(server, 'client')).toBe(false)
    await networks.lan.heal()
    await client.waitUntilSucceeds('ping -c 1 -W 2 server', { timeoutMs: 20_000 })
    expect(await reaches(server, 'client')).toBe(true)
  })

  test('leaves an open connection between the machines, changed files on both, a partition and a blocked link', async ({ server, client, networks }) => {
    await server.succeed('(sleep 600 | nc -l -p 7001 >/dev/null 2>&1 &)')
    await server.waitForOpenPort(7001)
    await client.succeed('(sleep 600 | nc server 7001 >/dev/null 2>&1 &)')
    await server.waitUntilSucceeds(established7001, { timeoutMs: 10_000 })
    await server.succeed('echo dirty > /root/state')
    await client.succeed('echo dirty > /root/state')
    await networks.lan.partition(['server'], ['client'])
    await server.block()
  })

  test('the next test finds both machines clean, healed, links up, and able to connect again', async ({ server, client }) => {
    expect(await server.succeed('cat /root/state')).toBe('golden\n')
    expect(await client.succeed('cat /root/state')).toBe('golden\n')
    expect((await server.exec(established7001)).exitCode).not.toBe(0)
    await server.succeed('(echo again | nc -l -p 7002 >/dev/null 2>&1 &)')
    await server.waitForOpenPort(7002)
    expect(await client.succeed('nc -w 5 server 7002 </dev/null')).toBe('again\n')
  })

  test('a test that names one member still holds the whole group, in a consistent state', async ({ client }) => {
    expect(await client.succeed('cat /root/state')).toBe('golden\n')
    await client.succeed('ping -c 1 -W 5 server')
  })
})

describe('the library: Network.create and Vm.start({ networks })', () => {
  it('numbers machines in the order they join, names every machine on the network in each /etc/hosts, and frees the number when a machine goes', async () => {
    await using lan = await Network.create({ name: 'office' })
    await using first = await Vm.start({ image: 'tiny', name: 'alpha', networks: [lan] })
    // Two more side by side: each joins before either runs, so neither seed names the other.
    const [second, third] = await Promise.all([Vm.start({ image: 'tiny', name: 'beta', networks: [lan] }), Vm.start({ image: 'tiny', name: 'gamma', networks: [lan] })])
    try {
      expect(await first.guestIp('office')).toBe(`192.168.${lan.index}.1`)
      expect([await second.guestIp(lan), await third.guestIp(lan)].sort()).toEqual([`192.168.${lan.index}.2`, `192.168.${lan.index}.3`])
      expect(lan.members().map((member) => member.name).sort()).toEqual(['alpha', 'beta', 'gamma'])
      await second.succeed('ping -c 1 -W 5 alpha')
      // alpha was up before the others: it learnt their names when they came up.
      await first.succeed('ping -c 1 -W 5 beta')
      await first.succeed('ping -6 -c 1 -W 5 gamma')
      await second.succeed('ping -c 1 -W 5 gamma')
      await third.succeed('ping -c 1 -W 5 beta')
      // The harness's own commands are not the test's: they stay out of the record a failure report prints.
      expect(first.commands.map((record) => record.command).join('\n')).not.toContain('/etc/hosts')
    } finally {
      await Promise.all([second.destroy(), third.destroy()])
    }
    expect(lan.members().map((member) => member.name)).toEqual(['alpha'])
  })
})
