import { constants } from 'node:fs'
import { access } from 'node:fs/promises'
import { HostError } from '../errors.js'
import { isStaticElf } from './elf.js'
import { findBinary } from './find-binary.js'
import { findGuestKernel } from './guest-kernel.js'
import type { PackageFamily } from './host-distro.js'

export type RequirementId =
  | 'qemu-system'
  | 'qemu-img'
  | 'seed-iso-tool'
  | 'setpriv'
  | 'flock'
  | 'vde-switch'
  | 'guest-kernel'
  | 'busybox-static'
  | 'dropbear'
  | 'dropbearconvert'
  | 'sftp-server'
  | 'mkfs-ext4'
  | 'mmdebstrap'
  | 'chroot'
  | 'ssh-client'
  | 'syslinux'
  | 'syslinux-mbr'
  | 'mkfs-fat'
  | 'mtools'
  | 'vde-plug'
  | 'virsh'
  | 'libvirtd'
  | 'dnsmasq'
  | 'sshd'
  | 'unshare'

/** 'run': what vmharness itself needs; 'test': what only this project's own tests need. */
export type RequirementGroup = 'run' | 'test'

/** One thing the host must provide, and the Debian package that provides it. */
export interface Requirement {
  id: RequirementId
  what: string
  debianPackage: string
  /** Where Ubuntu differs from Debian: its package's name there, or why none of its packages will do. */
  ubuntu?: string | { none: string }
  neededFor: string
  /** Default 'run'. */
  group?: RequirementGroup
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

/** `path` when it exists (and, with `mode`, is accessible that way); else undefined. */
async function existing(path: string, mode = constants.F_OK): Promise<string | undefined> {
  return access(path, mode).then(
    () => path,
    () => undefined,
  )
}

/** Environment variables that point at a tool of the user's choosing instead of the one on PATH. */
const overrides: Partial<Record<RequirementId, string>> = { 'qemu-system': 'VMHARNESS_QEMU', 'seed-iso-tool': 'VMHARNESS_SEED_ISO_TOOL' }

/** The override's executable when the variable is set (and nothing else then), else `locate`. */
function overridable(id: RequirementId, locate: () => Promise<string | undefined>): () => Promise<string | undefined> {
  return () => {
    const variable = overrides[id]
    const value = variable ? process.env[variable] : undefined
    return value ? existing(value, constants.X_OK) : locate()
  }
}

// findGuestKernel takes only Debian's cloud kernel; Ubuntu's linux-image-kvm or -virtual were never tried with the tiny image.
const ubuntuKernel =
  "Ubuntu has no linux-image-cloud-amd64, and vmharness looks only for Debian's cloud kernel (/boot/vmlinuz-*-cloud-amd64); " +
  "Ubuntu's kernels (linux-image-kvm, linux-image-virtual) are untested with it: set VMHARNESS_KERNEL=/path/to/vmlinuz to try one, or run in a Debian 12 container"

export const requirements: Requirement[] = [
  { id: 'qemu-system', what: 'qemu-system-x86_64', debianPackage: 'qemu-system-x86', neededFor: 'running VMs', locate: overridable('qemu-system', () => findBinary('qemu-system-x86_64')) },
  { id: 'qemu-img', what: 'qemu-img', debianPackage: 'qemu-utils', neededFor: 'disk overlays and images', locate: () => findBinary('qemu-img') },
  { id: 'seed-iso-tool', what: 'a seed-ISO tool (genisoimage, xorriso or mkisofs)', debianPackage: 'genisoimage', neededFor: 'NoCloud seeds', locate: overridable('seed-iso-tool', () => firstBinary('genisoimage', 'mkisofs', 'xorriso')) },
  { id: 'setpriv', what: 'setpriv', debianPackage: 'util-linux', neededFor: 'VMs that die with their owner', locate: () => findBinary('setpriv') },
  { id: 'flock', what: 'flock', debianPackage: 'util-linux', neededFor: 'cache locks that workers and shards share', locate: () => findBinary('flock') },
  { id: 'vde-switch', what: 'vde_switch', debianPackage: 'vde2', neededFor: 'networks between machines', locate: () => findBinary('vde_switch') },
  { id: 'guest-kernel', what: 'a guest kernel (/boot/vmlinuz-*-cloud-amd64)', debianPackage: 'linux-image-cloud-amd64', ubuntu: { none: ubuntuKernel }, neededFor: 'the tiny image', locate: () => findGuestKernel() },
  {
    id: 'busybox-static',
    what: 'a static busybox',
    debianPackage: 'busybox-static',
    neededFor: 'the tiny image',
    locate: async () => {
      const path = await existing('/bin/busybox')
      return path && (await isStaticElf(path)) ? path : undefined
    },
  },
  { id: 'dropbear', what: 'dropbear', debianPackage: 'dropbear-bin', neededFor: 'the tiny image', locate: () => findBinary('dropbear') },
  { id: 'dropbearconvert', what: 'dropbearconvert', debianPackage: 'dropbear-bin', neededFor: 'the tiny image (its pinned host key)', locate: () => findBinary('dropbearconvert') },
  { id: 'sftp-server', what: 'sftp-server', debianPackage: 'openssh-sftp-server', neededFor: 'the tiny image (sftp)', locate: () => existing('/usr/lib/openssh/sftp-server') },
  { id: 'mkfs-ext4', what: 'mkfs.ext4', debianPackage: 'e2fsprogs', neededFor: 'building guest images', locate: () => findBinary('mkfs.ext4') },
  { id: 'mmdebstrap', what: 'mmdebstrap', debianPackage: 'mmdebstrap', neededFor: 'the Debian image', locate: () => findBinary('mmdebstrap') },
  { id: 'ssh-client', what: 'the OpenSSH client (ssh)', debianPackage: 'openssh-client', neededFor: 'vmharness ssh into kept VMs', locate: () => findBinary('ssh') },
  { id: 'chroot', what: 'chroot', debianPackage: 'coreutils', neededFor: 'the Debian image (enabling units offline)', locate: () => findBinary('chroot') },
  // The project's tests build a disk that boots through its own bootloader, the way a cloud image does.
  { id: 'syslinux', what: 'syslinux', debianPackage: 'syslinux', neededFor: "this project's tests (a disk with its own bootloader)", group: 'test', locate: () => findBinary('syslinux') },
  { id: 'syslinux-mbr', what: 'syslinux MBR code (/usr/lib/syslinux/mbr/mbr.bin)', debianPackage: 'syslinux-common', neededFor: "this project's tests (a disk with its own bootloader)", group: 'test', locate: () => existing('/usr/lib/syslinux/mbr/mbr.bin', constants.R_OK) },
  { id: 'mkfs-fat', what: 'mkfs.fat', debianPackage: 'dosfstools', neededFor: "this project's tests (a disk with its own bootloader)", group: 'test', locate: () => findBinary('mkfs.fat') },
  { id: 'mtools', what: 'mcopy', debianPackage: 'mtools', neededFor: "this project's tests (a disk with its own bootloader)", group: 'test', locate: () => findBinary('mcopy') },
  // The project's network tests plug into a switch without a VM; vde2 depends on the package that has it.
  { id: 'vde-plug', what: 'vde_plug', debianPackage: 'vde2', neededFor: "this project's tests (frames through a switch without a VM)", group: 'test', locate: () => findBinary('vde_plug') },
  // The libvirt backend needs only virsh here (the daemon may run on another host); the project's
  // tests run a daemon of their own in a namespace (scripts/libvirt-sandbox), with an sshd for qemu+ssh://.
  { id: 'virsh', what: 'virsh', debianPackage: 'libvirt-clients', neededFor: "the libvirt backend (and this project's tests of it)", group: 'test', locate: () => findBinary('virsh') },
  { id: 'libvirtd', what: 'libvirtd', debianPackage: 'libvirt-daemon-system', neededFor: "this project's tests of the libvirt backend (a daemon in a namespace of their own)", group: 'test', locate: () => existing('/usr/sbin/libvirtd', constants.X_OK) },
  { id: 'dnsmasq', what: 'dnsmasq', debianPackage: 'dnsmasq-base', neededFor: "this project's tests of the libvirt backend (DHCP on its networks)", group: 'test', locate: () => existing('/usr/sbin/dnsmasq', constants.X_OK) },
  { id: 'sshd', what: 'sshd', debianPackage: 'openssh-server', neededFor: "this project's tests of the libvirt backend (a qemu+ssh:// host on 127.0.0.1)", group: 'test', locate: () => existing('/usr/sbin/sshd', constants.X_OK) },
  { id: 'unshare', what: 'unshare', debianPackage: 'util-linux', neededFor: "this project's tests of the libvirt backend (namespaces of their own)", group: 'test', locate: () => findBinary('unshare') },
]

function inGroups(requirement: Requirement, groups: readonly RequirementGroup[]): boolean {
  return groups.includes(requirement.group ?? 'run')
}

/** Where the host provides a requirement; otherwise a HostError naming the Debian package to install. */
export async function locateRequired(id: RequirementId): Promise<string> {
  const path = await requirement(id).locate()
  if (!path) throw missingRequirement(id)
  return path
}

export function missingRequirement(id: RequirementId): HostError {
  const { what, neededFor, debianPackage } = requirement(id)
  const variable = overrides[id]
  if (variable && process.env[variable]) {
    return new HostError(`${variable}=${process.env[variable]} is not an executable file; it should point at ${what}, needed for ${neededFor}`, `point ${variable} at an executable, or unset it to use the one on PATH`)
  }
  return new HostError(`${what} is missing on this host (needed for ${neededFor})`, `${installCommand([debianPackage])}, or run: vmharness doctor --install`)
}

function requirement(id: RequirementId): Requirement {
  const found = requirements.find((candidate) => candidate.id === id)
  if (!found) throw new TypeError(`unknown requirement ${id}`)
  return found
}

export interface RequirementCheck {
  requirement: Requirement
  path: string | undefined
}

/** Looks for every requirement of `groups` (default: what vmharness itself needs). */
export async function checkRequirements(groups: readonly RequirementGroup[] = ['run']): Promise<RequirementCheck[]> {
  return Promise.all(requirements.filter((requirement) => inGroups(requirement, groups)).map(async (requirement) => ({ requirement, path: await requirement.locate() })))
}

/** The package that provides `requirement` on `family`, or why there is none. */
export function packageOn(requirement: Requirement, family: PackageFamily): { name: string } | { none: string } {
  if (family === 'ubuntu' && requirement.ubuntu !== undefined) return typeof requirement.ubuntu === 'string' ? { name: requirement.ubuntu } : requirement.ubuntu
  return { name: requirement.debianPackage }
}

export function installCommand(packages: string[]): string {
  return `apt-get update && apt-get install -y --no-install-recommends ${packages.join(' ')}`
}

export function missingPackages(checks: RequirementCheck[]): string[] {
  return [...new Set(checks.filter((check) => !check.path).map((check) => check.requirement.debianPackage))]
}

export function allPackages(groups: readonly RequirementGroup[] = ['run']): string[] {
  return [...new Set(requirements.filter((requirement) => inGroups(requirement, groups)).map((requirement) => requirement.debianPackage))]
}
