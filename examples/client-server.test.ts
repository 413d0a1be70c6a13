// Two machines that talk to each other: a Debian server running a real service, and a tiny
// client that reaches it by name. Left without `networks`, both share one network named 'lan':
// server is 192.168.1.1 and client 192.168.1.2, and each finds the other in /etc/hosts.
import { describe, expect } from 'vitest'
import { vmTest } from 'vmharness/vitest'

const test = vmTest({
  machines: {
    server: {
      image: { name: 'debian', packages: ['curl'] },
      setup: async (vm) => {
        await vm.succeed('mkdir -p /srv/www && echo "hello over the lan" > /srv/www/index.html')
        await vm.succeed('cat > /etc/systemd/system/web.service', {
          stdin: '[Service]\nExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/www\n[Install]\nWantedBy=multi-user.target\n',
        })
        await vm.succeed('systemctl daemon-reload && systemctl enable --now web.service')
        await vm.waitForOpenPort(8080)
      },
    },
    client: { image: 'tiny' },
  },
})

function say(line: string): void {
  process.stdout.write(`  [example] ${line}\n`)
}

describe.sequential('a client and a server on one network', { timeout: 600_000 }, () => {
  test('the client fetches the page from the server by name', async ({ server, client }) => {
    const page = await client.succeed('wget -qO- http://server:8080/')
    say(`client (${await client.guestIp()}) GET http://server:8080/ (${await server.guestIp()}) → ${page.trim()}`)
    expect(page).toBe('hello over the lan\n')
  })

  test('a partition cuts the client off; heal lets it through again', async ({ server, client, networks }) => {
    await networks.lan.partition(['server'], ['client'])
    // (busybox wget's own -T crashes in Debian's static build: `timeout` bounds it instead.)
    const cut = await client.exec('timeout 3 wget -qO- http://server:8080/')
    say(`partitioned: wget ${cut.exitCode === null ? `killed by ${cut.signal} after 3 s` : `exit ${cut.exitCode}`}`)
    expect(cut.exitCode).not.toBe(0)
    await networks.lan.heal()
    expect(await client.waitUntilSucceeds('timeout 3 wget -qO- http://server:8080/', { timeoutMs: 30_000 })).toBe('hello over the lan\n')
    say('healed: the page comes through again')
    expect(await server.succeed('systemctl is-active web.service')).toBe('active\n')
  })

  test('a test may break the server and leave the network cut', async ({ server, networks }) => {
    await server.succeed('systemctl stop web.service && rm -rf /srv/www')
    await networks.lan.partition(['server'], ['client'])
    say('stopped the service, deleted its files, partitioned the network')
  })

  test('the next test finds the whole group clean: service up, network whole', async ({ server, client }) => {
    expect(await client.succeed('wget -qO- http://server:8080/')).toBe('hello over the lan\n')
    say(`rolled back together: web.service ${(await server.succeed('systemctl is-active web.service')).trim()}, page served to the client again`)
  })
})
