import { describe, expect, it } from 'vitest'
import { hostnameFor, seedFiles, type SeedContents } from '../../src/images/nocloud-seed.js'

const base: SeedContents = {
  instanceId: 'vmharness-1',
  hostname: 'server',
  authorizedKeys: ['ssh-ed25519 AAAAC3 run'],
  hostKey: { privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n', publicKey: 'ssh-ed25519 AAAAHOST host' },
}

describe('NoCloud seed', () => {
  const files = seedFiles(base)

  it('writes meta-data with the instance id and hostname', () => {
    expect(files.metaData).toBe('instance-id: vmharness-1\nlocal-hostname: server\n')
  })

  it('writes cloud-config user-data with the authorized key and the pinned host key', () => {
    expect(files.userData.split('\n')[0]).toBe('#cloud-config')
    expect(files.userData).toContain('ssh_authorized_keys:\n  - "ssh-ed25519 AAAAC3 run"\n')
    expect(files.userData).toContain('  ed25519_private: |\n    -----BEGIN OPENSSH PRIVATE KEY-----\n    abc\n    -----END OPENSSH PRIVATE KEY-----\n')
    expect(files.userData).toContain('  ed25519_public: "ssh-ed25519 AAAAHOST host"')
    expect(files.userData).toContain('ssh_pwauth: false')
  })

  it('derives hostnames a guest accepts from any VM name', () => {
    expect(hostnameFor('Web Server #1')).toBe('web-server-1')
    expect(hostnameFor('$(reboot)')).toBe('reboot')
    expect(hostnameFor('***')).toBe('vm')
  })
})

describe('NoCloud seed for machines on virtual networks', () => {
  const lan = { mac: '52:54:00:12:01:02', ipv4: '192.168.1.2/24', ipv6: '2001:db8:1::2/64' }

  it('lists each network NIC and each hosts entry in meta-data, one entry a line, after the hostname', () => {
    const files = seedFiles({
      ...base,
      networks: [lan, { mac: '52:54:00:12:0A:02', ipv4: '192.168.10.2/24', ipv6: '2001:db8:10::2/64' }],
      hosts: [
        { address: '192.168.1.1', name: 'client' },
        { address: '2001:db8:1::1', name: 'client' },
      ],
    })
    expect(files.metaData).toBe(
      [
        'instance-id: vmharness-1',
        'local-hostname: server',
        'vmharness-networks:',
        '- 52:54:00:12:01:02 192.168.1.2/24 2001:db8:1::2/64',
        '- 52:54:00:12:0a:02 192.168.10.2/24 2001:db8:10::2/64',
        'vmharness-hosts:',
        '- 192.168.1.1 client',
        '- 2001:db8:1::1 client',
        '',
      ].join('\n'),
    )
  })

  it('writes nothing new for a machine on no network, so its seed stays byte for byte what it was', () => {
    expect(seedFiles({ ...base, networks: [], hosts: [] })).toEqual(seedFiles(base))
    expect(seedFiles({ ...base, networks: undefined, hosts: undefined }).metaData).toBe('instance-id: vmharness-1\nlocal-hostname: server\n')
  })

  it('writes either list alone', () => {
    expect(seedFiles({ ...base, networks: [lan] }).metaData).not.toContain('vmharness-hosts')
    expect(seedFiles({ ...base, hosts: [{ address: '10.1.2.3', name: 'db.internal' }] }).metaData).toBe(
      'instance-id: vmharness-1\nlocal-hostname: server\nvmharness-hosts:\n- 10.1.2.3 db.internal\n',
    )
  })

  it('refuses values that are not what they claim, naming the field, before a guest could misread them', () => {
    const cases: [Partial<SeedContents>, string][] = [
      [{ networks: [{ ...lan, mac: '52:54:00:12:01' }] }, 'networks[0].mac'],
      [{ networks: [{ ...lan, mac: '52:54:00:12:01:02\nvmharness-hosts:' }] }, 'networks[0].mac'],
      [{ networks: [{ ...lan, mac: '52:54:00:12:0a:02' }, { ...lan, mac: '52:54:00:12:0A:02', ipv4: '192.168.10.3/24' }] }, 'networks[1].mac'],
      [{ networks: [{ ...lan, ipv4: '192.168.1.2' }] }, 'networks[0].ipv4'],
      [{ networks: [{ ...lan, ipv4: '192.168.1.2/33' }] }, 'networks[0].ipv4'],
      [{ networks: [{ ...lan, ipv4: '2001:db8:1::2/64' }] }, 'networks[0].ipv4'],
      [{ networks: [{ ...lan, ipv6: '192.168.1.2/24' }] }, 'networks[0].ipv6'],
      [{ networks: [{ ...lan, ipv6: '2001:db8:1::2/129' }] }, 'networks[0].ipv6'],
      [{ networks: [{ ...lan, ipv6: '2001:db8:1::2/64 extra' }] }, 'networks[0].ipv6'],
      [{ hosts: [{ address: 'server', name: 'server' }] }, 'hosts[0].address'],
      [{ hosts: [{ address: '10.0.0.1', name: 'two words' }] }, 'hosts[0].name'],
      [{ hosts: [{ address: '10.0.0.1', name: 'a\n- 1.2.3.4 b' }] }, 'hosts[0].name'],
    ]
    for (const [extra, field] of cases) {
      expect(() => seedFiles({ ...base, ...extra }), field).toThrow(expect.objectContaining({ name: 'SpecError', field }))
    }
  })
})
