import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { HostError } from '../errors.js'
import { findBinary } from '../host/find-binary.js'
import { installCommand } from '../host/requirements.js'

export interface SeedContents {
  instanceId: string
  hostname: string
  authorizedKeys: string[]
  hostKey: { privateKey: string; publicKey: string }
  /** Static address for the tiny guest (CIDR); its default is user-mode networking's 10.0.2.15/24. */
  address?: string
  gateway?: string
}

/** meta-data and user-data in the NoCloud layout that cloud-init and the tiny guest both read. */
export function seedFiles(seed: SeedContents): { metaData: string; userData: string } {
  const metaData = [
    `instance-id: ${seed.instanceId}`,
    `local-hostname: ${seed.hostname}`,
    ...(seed.address ? [`vmharness-address: ${seed.address}`] : []),
    ...(seed.gateway ? [`vmharness-gateway: ${seed.gateway}`] : []),
  ].join('\n')
  const userData = [
    '#cloud-config',
    'disable_root: false',
    'ssh_pwauth: false',
    'ssh_deletekeys: true',
    'ssh_authorized_keys:',
    ...seed.authorizedKeys.map((key) => `  - ${JSON.stringify(key.trim())}`),
    'ssh_keys:',
    '  ed25519_private: |',
    ...seed.hostKey.privateKey.trim().split('\n').map((line) => `    ${line}`),
    `  ed25519_public: ${JSON.stringify(seed.hostKey.publicKey.trim())}`,
  ].join('\n')
  return { metaData: metaData + '\n', userData: userData + '\n' }
}

/** Hostnames allow letters, digits and dashes; anything else in a VM name becomes a dash. */
export function hostnameFor(name: string): string {
  const cleaned = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63)
  return cleaned || 'vm'
}

/** Writes a NoCloud seed ISO (volume label `cidata`) with whichever ISO tool the host has. */
export async function writeSeedIso(outputPath: string, seed: SeedContents): Promise<void> {
  const tool = await isoTool()
  const staging = await mkdtemp(join(outputPath, '..', 'seed-'))
  try {
    const files = seedFiles(seed)
    await writeFile(join(staging, 'meta-data'), files.metaData, { mode: 0o600 })
    await writeFile(join(staging, 'user-data'), files.userData, { mode: 0o600 })
    const args = ['-output', outputPath, '-volid', 'cidata', '-joliet', '-rock', '-quiet', join(staging, 'meta-data'), join(staging, 'user-data')]
    await execa(tool.path, tool.xorriso ? ['-as', 'mkisofs', ...args] : args, { stdin: 'ignore' })
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
}

async function isoTool(): Promise<{ path: string; xorriso: boolean }> {
  for (const name of ['genisoimage', 'mkisofs', 'xorriso']) {
    const path = await findBinary(name)
    if (path) return { path, xorriso: name === 'xorriso' }
  }
  throw new HostError('no tool to write a NoCloud seed ISO (genisoimage, mkisofs or xorriso)', installCommand(['genisoimage']))
}
