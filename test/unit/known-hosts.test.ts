import { createHmac, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { findBinary } from '../../src/host/find-binary.js'
import { generateEd25519 } from '../../src/ssh/openssh-key.js'
import { knownHostKeys } from '../../src/ssh/known-hosts.js'
import { skipBecause } from '../helpers/skip.js'

/** A fresh ed25519 host key: its known_hosts fields ('ssh-ed25519 BASE64') and its blob. */
function hostKey(): { fields: string; blob: Buffer } {
  const [type, base64] = generateEd25519('host').publicKey.split(' ') as [string, string]
  return { fields: `${type} ${base64}`, blob: Buffer.from(base64, 'base64') }
}

/** A hashed known_hosts name, as OpenSSH writes it: |1|base64(salt)|base64(HMAC-SHA1 keyed with the salt, of the name). */
function hashed(name: string, salt = randomBytes(20)): string {
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`
}

describe('knownHostKeys', () => {
  const a = hostKey()
  const b = hostKey()
  const c = hostKey()

  it('finds a plain entry for a host on port 22, and only for that host', () => {
    const text = [`hv1.example.org ${a.fields}`, `hv2.example.org ${b.fields} a comment`].join('\n')
    expect(knownHostKeys(text, 'hv1.example.org', 22)).toEqual([a.blob])
    expect(knownHostKeys(text, 'hv2.example.org', 22)).toEqual([b.blob])
    expect(knownHostKeys(text, 'hv3.example.org', 22)).toEqual([])
    // A name is matched whole, never as a prefix or suffix.
    expect(knownHostKeys(text, 'hv1', 22)).toEqual([])
    expect(knownHostKeys(text, 'xhv1.example.org', 22)).toEqual([])
  })

  it('matches [host]:port entries on their port only, and plain ones on port 22 only', () => {
    const text = [`hv1 ${a.fields}`, `[hv1]:2222 ${b.fields}`, `[10.0.0.5]:2200 ${c.fields}`].join('\n')
    expect(knownHostKeys(text, 'hv1', 22)).toEqual([a.blob])
    expect(knownHostKeys(text, 'hv1', 2222)).toEqual([b.blob])
    expect(knownHostKeys(text, 'hv1', 2200)).toEqual([])
    expect(knownHostKeys(text, '10.0.0.5', 2200)).toEqual([c.blob])
    expect(knownHostKeys(text, '10.0.0.5', 22)).toEqual([])
  })

  it('finds a host anywhere in a comma list of names', () => {
    const text = `hv1,10.0.0.1,[hv1]:2222,[::1]:2201 ${a.fields}\n`
    expect(knownHostKeys(text, 'hv1', 22)).toEqual([a.blob])
    expect(knownHostKeys(text, '10.0.0.1', 22)).toEqual([a.blob])
    expect(knownHostKeys(text, 'hv1', 2222)).toEqual([a.blob])
    expect(knownHostKeys(text, '::1', 2201)).toEqual([a.blob])
    expect(knownHostKeys(text, '10.0.0.1', 2222)).toEqual([])
  })

  it('finds every key a host has, in file order', () => {
    const text = [`hv1 ${a.fields}`, `other ${b.fields}`, `hv1 ${c.fields}`].join('\n')
    expect(knownHostKeys(text, 'hv1', 22)).toEqual([a.blob, c.blob])
  })

  it('matches hashed entries by the HMAC of the name, with the port in brackets when it is not 22', () => {
    const text = [`${hashed('hv1.example.org')} ${a.fields}`, `${hashed('[hv1.example.org]:2222')} ${b.fields}`].join('\n')
    expect(knownHostKeys(text, 'hv1.example.org', 22)).toEqual([a.blob])
    expect(knownHostKeys(text, 'hv1.example.org', 2222)).toEqual([b.blob])
    expect(knownHostKeys(text, 'hv2.example.org', 22)).toEqual([])
    expect(knownHostKeys(text, 'hv1.example.org', 2200)).toEqual([])
  })

  it('does not match a hashed entry whose digest is for another salt', () => {
    const real = hashed('hv1')
    const [, , , digest] = real.split('|')
    const forged = `|1|${randomBytes(20).toString('base64')}|${digest}`
    expect(knownHostKeys(`${forged} ${a.fields}`, 'hv1', 22)).toEqual([])
  })

  it('skips comments, blank and short lines, and tolerates CRLF and surrounding spaces', () => {
    const text = [
      '# hv1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
      `#hv1 ${b.fields}`,
      '',
      '   ',
      'hv1 ssh-ed25519',
      `  hv1   ${a.fields}  \r`,
    ].join('\n')
    expect(knownHostKeys(text, 'hv1', 22)).toEqual([a.blob])
  })

  it('ignores @revoked and @cert-authority lines: they never pin a key', () => {
    const text = [`@revoked hv1 ${b.fields}`, `@cert-authority hv1 ${c.fields}`, `@cert-authority ${hashed('hv1')} ${c.fields}`].join('\n')
    expect(knownHostKeys(text, 'hv1', 22)).toEqual([])
    expect(knownHostKeys(`${text}\nhv1 ${a.fields}`, 'hv1', 22)).toEqual([a.blob])
  })

  it('matches host names without regard to case, as OpenSSH does', () => {
    const text = [`hv1.example.org ${a.fields}`, `${hashed('hv2.example.org')} ${b.fields}`, `[HV3.Example.Org]:2222 ${c.fields}`].join('\n')
    expect(knownHostKeys(text, 'HV1.Example.ORG', 22)).toEqual([a.blob])
    expect(knownHostKeys(text, 'Hv2.example.org', 22)).toEqual([b.blob])
    expect(knownHostKeys(text, 'hv3.example.org', 2222)).toEqual([c.blob])
  })

  it('reads the entries ssh-keygen -H hashes', async (context) => {
    const sshKeygen = await findBinary('ssh-keygen')
    if (!sshKeygen) skipBecause(context, 'needs ssh-keygen (openssh-client) on the host')
    const dir = await mkdtemp(join(tmpdir(), 'vmh-known-hosts-'))
    try {
      const file = join(dir, 'known_hosts')
      await writeFile(file, [`hv1.example.org,10.1.2.3 ${a.fields}`, `[hv1.example.org]:2222 ${b.fields}`, `other ${c.fields}`, ''].join('\n'))
      await execa(sshKeygen, ['-H', '-f', file])
      const text = await readFile(file, 'utf8')
      expect(text).not.toContain('hv1.example.org')
      expect(text).toMatch(/^\|1\|/m)
      expect(knownHostKeys(text, 'hv1.example.org', 22)).toEqual([a.blob])
      expect(knownHostKeys(text, '10.1.2.3', 22)).toEqual([a.blob])
      expect(knownHostKeys(text, 'hv1.example.org', 2222)).toEqual([b.blob])
      expect(knownHostKeys(text, 'other', 22)).toEqual([c.blob])
      expect(knownHostKeys(text, 'hv2.example.org', 22)).toEqual([])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
