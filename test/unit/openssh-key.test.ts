import { createPrivateKey, generateKeyPairSync, verify } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import ssh2 from 'ssh2'
import { describe, expect, it } from 'vitest'
import { findBinary } from '../../src/host/find-binary.js'
import { encodeEd25519, generateEd25519 } from '../../src/ssh/openssh-key.js'
import { skipBecause } from '../helpers/skip.js'

/** A key whose 32-byte public key starts with a zero byte: the case ssh2's own generator mangles. */
function keyWithLeadingZero() {
  for (;;) {
    const { privateKey } = generateKeyPairSync('ed25519')
    if (Buffer.from(privateKey.export({ format: 'jwk' }).x as string, 'base64url')[0] === 0) return privateKey
  }
}

function publicKeyBytes(line: string): Buffer {
  const blob = Buffer.from(line.split(' ')[1] as string, 'base64')
  expect(blob.readUInt32BE(0)).toBe(11)
  expect(blob.subarray(4, 15).toString()).toBe('ssh-ed25519')
  expect(blob.readUInt32BE(15)).toBe(32)
  return blob.subarray(19)
}

describe('ed25519 keys in OpenSSH format', () => {
  it('keeps the public key 32 bytes long even when it starts with a zero byte', () => {
    const key = keyWithLeadingZero()
    const encoded = encodeEd25519(key, 'zero')
    const pub = publicKeyBytes(encoded.publicKey)
    expect(pub).toHaveLength(32)
    expect(pub[0]).toBe(0)
    expect(encoded.publicKey.endsWith(' zero')).toBe(true)
  })

  it('writes a private key that ssh2 parses and that signs for the public key it names', () => {
    for (const key of [keyWithLeadingZero(), generateKeyPairSync('ed25519').privateKey]) {
      const encoded = encodeEd25519(key, 'pair')
      const parsed = ssh2.utils.parseKey(encoded.privateKey)
      if (parsed instanceof Error) throw parsed
      const data = Buffer.from('vmharness')
      const signature = (Array.isArray(parsed) ? parsed[0] : parsed).sign(data)
      const publicKey = createPrivateKey({ key: key.export({ format: 'jwk' }), format: 'jwk' })
      expect(verify(null, data, publicKey, signature)).toBe(true)
      expect(publicKeyBytes(encoded.publicKey).equals(Buffer.from(key.export({ format: 'jwk' }).x as string, 'base64url'))).toBe(true)
    }
  })

  it('is accepted by OpenSSH and dropbear, leading zero byte included', async (context) => {
    const sshKeygen = await findBinary('ssh-keygen')
    const dropbearconvert = await findBinary('dropbearconvert')
    if (!sshKeygen || !dropbearconvert) skipBecause(context, 'needs ssh-keygen (openssh-client) and dropbearconvert (dropbear-bin) on the host: run scripts/install-host-packages')
    const dir = await mkdtemp(join(tmpdir(), 'key-test-'))
    try {
      for (const [index, key] of [keyWithLeadingZero(), ...Array.from({ length: 5 }, () => generateKeyPairSync('ed25519').privateKey)].entries()) {
        const encoded = encodeEd25519(key, `k${index}`)
        const path = join(dir, `k${index}`)
        await writeFile(path, encoded.privateKey, { mode: 0o600 })
        const derived = await execa(sshKeygen, ['-y', '-f', path])
        expect(derived.stdout.trim()).toBe(encoded.publicKey)
        await execa(dropbearconvert, ['openssh', 'dropbear', path, `${path}.dropbear`])
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('generates a fresh pair each time', () => {
    expect(generateEd25519('a').publicKey).not.toBe(generateEd25519('a').publicKey)
  })
})
