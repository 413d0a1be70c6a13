import { access } from 'node:fs/promises'
import { isStaticElf } from './elf.js'
import { findBinary } from './find-binary.js'
import { findGuestKernel } from './guest-kernel.js'

/** One thing the host must provide, and the Debian package that provides it. */
export interface Requirement {
  what: string
  debianPackage: string
  neededFor: string
  locate(): Promise<string | undefined>
}

export const installScript = 'scripts/install-host-packages'

async function firstBinary(...names: string[]): Promise<string | undefined> {
  for (const name of names) {
    const found = await findBinary(name)
    if (found) return found
  }
  return undefined
}

async function existing(path: string): Promise<string | undefined> {
  return access(path).then(
    () => path,
    () => undefined,
  )
}

export const requirements: Requirement[] = [
  { what: 'qemu-system-x86_64', debianPackage: 'qemu-system-x86', neededFor: 'running VMs', locate: () => findBinary('qemu-system-x86_64') },
  { what: 'qemu-img', debianPackage: 'qemu-utils', neededFor: 'disk overlays and images', locate: () => findBinary('qemu-img') },
  { what: 'a seed-ISO tool (genisoimage, xorriso or mkisofs)', debianPackage: 'genisoimage', neededFor: 'NoCloud seeds', locate: () => firstBinary('genisoimage', 'xorriso', 'mkisofs') },
  { what: 'setpriv', debianPackage: 'util-linux', neededFor: 'VMs that die with their owner', locate: () => findBinary('setpriv') },
  { what: 'a guest kernel (/boot/vmlinuz-*-cloud-amd64)', debianPackage: 'linux-image-cloud-amd64', neededFor: 'the tiny image', locate: () => findGuestKernel() },
  {
    what: 'a static busybox',
    debianPackage: 'busybox-static',
    neededFor: 'the tiny image',
    locate: async () => {
      const path = await existing('/bin/busybox')
      return path && (await isStaticElf(path)) ? path : undefined
    },
  },
  { what: 'dropbear', debianPackage: 'dropbear-bin', neededFor: 'the tiny image', locate: () => findBinary('dropbear') },
  { what: 'sftp-server', debianPackage: 'openssh-sftp-server', neededFor: 'the tiny image (sftp)', locate: () => existing('/usr/lib/openssh/sftp-server') },
  { what: 'mkfs.ext4', debianPackage: 'e2fsprogs', neededFor: 'the tiny image', locate: () => findBinary('mkfs.ext4') },
]

export interface RequirementCheck {
  requirement: Requirement
  path: string | undefined
}

export async function checkRequirements(): Promise<RequirementCheck[]> {
  return Promise.all(requirements.map(async (requirement) => ({ requirement, path: await requirement.locate() })))
}

export function installCommand(packages: string[]): string {
  return `apt-get update && apt-get install -y --no-install-recommends ${packages.join(' ')}`
}

export function missingPackages(checks: RequirementCheck[]): string[] {
  return [...new Set(checks.filter((check) => !check.path).map((check) => check.requirement.debianPackage))]
}
