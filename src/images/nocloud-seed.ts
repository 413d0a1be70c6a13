import { writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { execa } from 'execa'
import { withDir } from 'tmp-promise'
import { locateRequired } from '../host/requirements.js'
import { networkSeedLines } from './seed-network.js'

export interface SeedContents {
  instanceId: string
  hostname: string
  authorizedKeys: string[]
  hostKey: { privateKey: string; publicKey: string }
  /** Static address for the tiny guest (CIDR); its default is user-mode networking's 10.0.2.15/24. */
  address?: string
  gateway?: string
  /** Static addresses on the NICs of virtual networks, each found by its MAC. */
  networks?: { mac: string; ipv4: string /* CIDR, e.g. 192.168.1.2/24 */; ipv6: string /* CIDR, e.g. 2001:db8:1::2/64 */ }[]
  /** /etc/hosts lines the guest gets besides localhost: one per address. */
  hosts?: { address: string; name: string }[]
}

/** meta-data and user-data in the NoCloud layout that cloud-init and the tiny guest both read. */
export function seedFiles(seed: SeedContents): { metaData: string; userData: string } {
  const metaData = [
    `instance-id: ${seed.instanceId}`,
    `local-hostname: ${seed.hostname}`,
    ...(seed.address ? [`vmharness-address: ${seed.address}`] : []),
    ...(seed.gateway ? [`vmharness-gateway: ${seed.gateway}`] : []),
    ...networkSeedLines(seed.networks, seed.hosts),
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
  const tool = await locateRequired('seed-iso-tool')
  const files = seedFiles(seed)
  // Staged beside the ISO: the VM's private directory, never a shared temp dir (the seed holds a private key).
  await withDir(
    async ({ path: staging }) => {
      await writeFile(join(staging, 'meta-data'), files.metaData, { mode: 0o600 })
      await writeFile(join(staging, 'user-data'), files.userData, { mode: 0o600 })
      const args = ['-output', outputPath, '-volid', 'cidata', '-joliet', '-rock', '-quiet', join(staging, 'meta-data'), join(staging, 'user-data')]
      await execa(tool, basename(tool) === 'xorriso' ? ['-as', 'mkisofs', ...args] : args, { stdin: 'ignore' })
    },
    { tmpdir: dirname(outputPath), prefix: 'seed-', unsafeCleanup: true },
  )
}
