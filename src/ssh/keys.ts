import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runDir } from '../host/run-dir.js'
import { generateEd25519 } from './openssh-key.js'

export interface KeyPair {
  /** OpenSSH private key text. */
  privateKey: string
  /** `ssh-ed25519 AAAA… comment` */
  publicKey: string
}

export function generateKeyPair(comment: string): KeyPair {
  return generateEd25519(comment)
}

/** The wire-format key blob of an `ssh-ed25519 AAAA…` line: what a server presents during key exchange. */
export function publicKeyBlob(publicKeyLine: string): Buffer {
  const base64 = publicKeyLine.trim().split(/\s+/)[1]
  if (!base64) throw new TypeError('not an OpenSSH public key line')
  return Buffer.from(base64, 'base64')
}

export interface ClientKey extends KeyPair {
  /** The private key file (0600), for `ssh -i`. */
  path: string
}

let runKey: Promise<ClientKey> | undefined

/** One client key pair per run, kept 0600 in the private run directory. */
export function runClientKey(): Promise<ClientKey> {
  runKey ??= (async () => {
    const pair = generateKeyPair('vmharness-run')
    const path = join((await runDir()).path, 'id_ed25519')
    await writeFile(path, pair.privateKey, { mode: 0o600 })
    await writeFile(`${path}.pub`, pair.publicKey + '\n', { mode: 0o600 })
    return { ...pair, path }
  })()
  return runKey
}
