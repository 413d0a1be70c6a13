import { describe, expect, it } from 'vitest'
import { hostnameFor, seedFiles } from '../../src/images/nocloud-seed.js'

describe('NoCloud seed', () => {
  const files = seedFiles({
    instanceId: 'vmharness-1',
    hostname: 'server',
    authorizedKeys: ['ssh-ed25519 AAAAC3 run'],
    hostKey: { privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n', publicKey: 'ssh-ed25519 AAAAHOST host' },
  })

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
