import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Vm } from '../../src/machine/vm.js'
import { nodeAddress } from '../../src/network/addressing.js'
import type { NetworkAttachment } from '../../src/spec/network-attachment.js'

const members = { server: 1, client: 2, debian: 3 } as const
type Member = keyof typeof members
const hosts = Object.entries(members).map(([name, node]) => ({ name, ...nodeAddress(1, node) }))

/** `<nic> <mac>` per NIC, lo left out. */
async function nicsByMac(vm: Vm): Promise<Map<string, string>> {
  const listing = await vm.succeed('for nic in /sys/class/net/*; do echo "${nic##*/} $(cat $nic/address)"; done')
  return new Map(listing.trim().split('\n').map((line) => line.split(' ').reverse() as [string, string]).filter(([, nic]) => nic !== 'lo'))
}

/** The machine's NIC on the network carries both addresses, usable at once; the other NIC (SSH's, which runs this) keeps user-mode networking's. */
async function expectAddresses(vm: Vm, member: Member): Promise<void> {
  const { mac, ipv4, ipv6 } = nodeAddress(1, members[member])
  const nics = await nicsByMac(vm)
  const lan = nics.get(mac)
  expect(lan, `a NIC with the MAC ${mac}`).toBeDefined()
  const lanAddresses = await vm.succeed(`ip -o addr show dev ${lan}`)
  expect(lanAddresses).toMatch(new RegExp(`inet ${ipv4.replaceAll('.', '\\.')}/24 `))
  expect(lanAddresses).toContain(`inet6 ${ipv6}/64 `)
  expect(lanAddresses).not.toMatch(/tentative|dadfailed/)
  const management = [...nics.values()].filter((nic) => nic !== lan)
  expect(management).toHaveLength(1)
  expect(await vm.succeed(`ip -o -4 addr show dev ${management[0]}`)).toContain('inet 10.0.2.15/24 ')
}

const expectedHosts = ['127.0.0.1 localhost', '::1 localhost', ...hosts.flatMap(({ name, ipv4, ipv6 }) => [`${ipv4} ${name}`, `${ipv6} ${name}`]), ''].join('\n')

// One switch and three guests for the whole file: these tests only read state or add a web server.
describe('guests on a virtual network, configured from their NoCloud seed', { timeout: 600_000 }, () => {
  let switchDir: string
  const vms: Partial<Record<Member, Vm>> = {}

  const attachment = (member: Member): NetworkAttachment => ({
    network: 'lan',
    index: 1,
    node: members[member],
    ...nodeAddress(1, members[member]),
    switchSocket: join(switchDir, 'switch'),
    hosts,
  })

  beforeAll(async () => {
    // A short path: a unix socket path has at most 108 bytes.
    switchDir = await mkdtemp('/tmp/vmh-lan-')
    await execa('vde_switch', ['--sock', join(switchDir, 'switch'), '--dirmode', '0700', '--daemon', '--pidfile', join(switchDir, 'pid')])
    vms.server = await Vm.start({ image: 'tiny', name: 'server', networks: [attachment('server')] })
    vms.client = await Vm.start({ image: 'tiny', name: 'client', networks: [attachment('client')] })
    vms.debian = await Vm.start({ image: 'debian', name: 'debian', networks: [attachment('debian')] })
  }, 900_000)

  afterAll(async () => {
    await Promise.all(Object.values(vms).map((vm) => vm.destroy()))
    const pid = await readFile(join(switchDir, 'pid'), 'utf8').catch(() => '')
    if (pid.trim()) process.kill(Number(pid), 'SIGTERM')
    await rm(switchDir, { recursive: true, force: true })
  })

  it('tiny: the NIC with the seed MAC has both static addresses, and the management NIC is unchanged', async () => {
    await expectAddresses(vm('server'), 'server')
    await expectAddresses(vm('client'), 'client')
  })

  it('Debian: the NIC with the seed MAC has both static addresses, and the management NIC is unchanged', async () => {
    await expectAddresses(vm('debian'), 'debian')
    const mac = nodeAddress(1, members.debian).mac
    expect(await vm('debian').succeed(`cat /run/systemd/network/05-vmharness-${mac.replaceAll(':', '')}.network`)).toContain(`MACAddress=${mac}`)
  })

  it('both images write /etc/hosts: localhost, then every machine on the network', async () => {
    for (const member of ['server', 'client', 'debian'] as const) expect(await vm(member).succeed('cat /etc/hosts'), member).toBe(expectedHosts)
  })

  it('a tiny client fetches from a tiny server and from a Debian server by name, over IPv4 and IPv6', async () => {
    await vm('server').succeed('mkdir -p /tmp/www && echo "tiny server" > /tmp/www/index.html && httpd -p 8080 -h /tmp/www')
    await vm('debian').succeed('mkdir -p /srv/www && echo "debian server" > /srv/www/index.html')
    await vm('debian').succeed('systemd-run --unit web-test python3 -m http.server 8080 --bind :: --directory /srv/www')
    await vm('server').waitForOpenPort(8080, { timeoutMs: 30_000 })
    await vm('debian').waitForOpenPort(8080, { timeoutMs: 30_000 })
    const client = vm('client')
    expect(await client.succeed('wget -qO- http://server:8080/')).toBe('tiny server\n')
    expect(await client.succeed('wget -qO- http://debian:8080/')).toBe('debian server\n')
    expect(await client.succeed(`wget -qO- 'http://[${nodeAddress(1, members.server).ipv6}]:8080/'`)).toBe('tiny server\n')
    expect(await client.succeed(`wget -qO- 'http://[${nodeAddress(1, members.debian).ipv6}]:8080/'`)).toBe('debian server\n')
    expect(await vm('debian').succeed('getent hosts client')).toMatch(/^(192\.168\.1\.2|2001:db8:1::2)\s+client\n$/)
  })

  function vm(member: Member): Vm {
    const started = vms[member]
    if (!started) throw new Error(`${member} did not start`)
    return started
  }
})
