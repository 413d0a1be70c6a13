import { request } from 'node:http'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { debianSources } from '../../src/images/apt-sources.js'
import { pointAtOutsideProxy } from '../../src/machine/outside-proxy-setup.js'
import { Vm } from '../../src/machine/vm.js'
import { skipBecause } from '../helpers/skip.js'

/** The Release file of the Debian mirror this host uses: somewhere outside that CI machines reach. */
async function mirrorReleaseUrl(): Promise<string | undefined> {
  const line = (await debianSources('bookworm').catch(() => []))[0]
  const uri = line?.split(' ')[1]
  return uri?.startsWith('http://') ? `${uri.replace(/\/$/, '')}/dists/bookworm/Release` : undefined
}

function hostReaches(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'HEAD', timeout: 10_000 }, (res) => resolve((res.statusCode ?? 500) < 400))
    req.on('error', () => resolve(false))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

describe('a machine that asks for outside access', () => {
  let vm: Vm
  let server: Server
  let port: number

  beforeAll(async () => {
    vm = await Vm.start({ image: 'tiny', name: 'outside', outsideAccess: true })
    server = createServer((socket) => socket.end('HTTP/1.0 200 OK\r\n\r\nsecret-from-host-loopback\n'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })

  afterAll(async () => {
    server?.close()
    await vm?.destroy()
  })

  /** An HTTP request sent to the proxy by hand: busybox nc stops reading once its input ends, so the input stays open a while. */
  const throughProxy = (requestLine: string, host: string, seconds: number) =>
    vm.exec(`(printf '${requestLine} HTTP/1.0\\r\\nHost: ${host}\\r\\n\\r\\n'; sleep ${seconds}) | nc -w ${seconds + 2} 10.0.2.100 3128`)

  it('reaches the world through the harness proxy at 10.0.2.100:3128', async (context) => {
    const url = await mirrorReleaseUrl()
    if (!url || !(await hostReaches(url))) return skipBecause(context, 'this host reaches no http:// Debian mirror, so there is no outside to reach')
    const reply = await throughProxy(`GET ${url}`, new URL(url).host, 6)
    expect(reply.stdout).toMatch(/^HTTP\/1\.1 200/)
    expect(reply.stdout).toContain('Codename: bookworm')
  })

  it('tells the guest where the proxy is: http_proxy for every login', async () => {
    expect(await vm.succeed('. /etc/profile; echo $http_proxy')).toBe('http://10.0.2.100:3128\n')
  })

  it('tells apt where the proxy is, on an image that has apt', async () => {
    // The tiny image has no apt: give it apt's configuration directory, then run the same set-up a boot runs.
    await vm.succeed('mkdir -p /etc/apt/apt.conf.d')
    await pointAtOutsideProxy({ exec: (command) => vm.exec(command) }, vm.name)
    expect(await vm.succeed('cat /etc/apt/apt.conf.d/80vmharness-proxy')).toBe('Acquire::http::Proxy "http://10.0.2.100:3128";\nAcquire::https::Proxy "http://10.0.2.100:3128";\n')
    expect(await vm.succeed('grep -c vmharness-proxy /etc/profile')).toBe('1\n')
  })

  it("never reaches the host's loopback: not through the proxy, not through 10.0.2.2", async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      const reply = await throughProxy(`GET http://${host}:${port}/`, `${host}:${port}`, 1)
      expect(reply.stdout).toMatch(/^HTTP\/1\.1 403/)
      expect(reply.stdout).not.toContain('secret-from-host-loopback')
    }
    const tunnel = await vm.exec(`(printf 'CONNECT 127.0.0.1:${port} HTTP/1.1\\r\\n\\r\\n'; sleep 1) | nc -w 3 10.0.2.100 3128`)
    expect(tunnel.stdout).toMatch(/^HTTP\/1\.1 403/)
    const direct = await vm.exec(`nc -w 3 10.0.2.2 ${port} </dev/null; echo "exit $?"`)
    expect(direct.stdout).not.toContain('secret-from-host-loopback')
  })
})
