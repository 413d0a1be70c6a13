// A real Debian guest: a systemd service installed once by setup, reached from the test process.
import { describe, expect } from 'vitest'
import { vmTest } from 'vmharness/vitest'

const test = vmTest({
  machines: {
    server: {
      // Built from the package mirror with mmdebstrap; the packages listed are installed at build time.
      image: { name: 'debian', packages: ['curl'] },
      // Runs once per cache key; every test starts from the state it leaves.
      setup: async (vm) => {
        await vm.succeed('mkdir -p /srv/www && echo "hello from a systemd service" > /srv/www/index.html')
        await vm.succeed('cat > /etc/systemd/system/web.service', {
          stdin: '[Service]\nExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/www\n[Install]\nWantedBy=multi-user.target\n',
        })
        await vm.succeed('systemctl daemon-reload && systemctl enable --now web.service')
        await vm.waitForUnit('web.service')
      },
    },
  },
})

function say(line: string): void {
  process.stdout.write(`  [example] ${line}\n`)
}

describe.sequential('a Debian guest with a service', { timeout: 600_000 }, () => {
  test('the service is up, and the host reaches it through a forwarded port', async ({ server }) => {
    await server.waitForUnit('web.service')
    await server.waitForOpenPort(8080)
    const port = await server.forwardPort(8080)
    const page = await (await fetch(`http://127.0.0.1:${port}/`)).text()
    say(`GET http://127.0.0.1:${port}/ → ${page.trim()}`)
    expect(page).toBe('hello from a systemd service\n')
    expect(await server.succeed('curl -s http://127.0.0.1:8080/')).toBe(page)
  })

  test('a test may break the service', async ({ server }) => {
    await server.succeed('systemctl stop web.service && rm -rf /srv/www')
    await server.waitUntilFails('curl -sf http://127.0.0.1:8080/')
    say('stopped the service and deleted its files')
  })

  test('the next test finds it running again', async ({ server }) => {
    await server.waitForUnit('web.service')
    expect(await server.succeed('cat /srv/www/index.html')).toBe('hello from a systemd service\n')
    say(`rolled back: ${(await server.succeed('systemctl is-active web.service')).trim()}, page restored, cloud-init ran ${(await server.succeed("grep -c \"running 'init-local'\" /var/log/cloud-init.log")).trim()} time(s)`)
  })
})
