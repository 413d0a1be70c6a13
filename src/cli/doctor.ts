import { execa } from 'execa'
import { acceleratorVerdict } from '../host/accelerator.js'
import { findBinary } from '../host/find-binary.js'
import { readHostDistro, type HostDistro } from '../host/host-distro.js'
import { diskIoVerdict } from '../hypervisor/qemu/disk-io.js'
import { checkRequirements, installCommand, missingPackages, packageOn, type RequirementCheck, type RequirementGroup, type RequirementId } from '../host/requirements.js'
import { planInstall } from './host-install.js'
import { checkLibvirt } from './libvirt-check.js'

export interface DoctorOptions {
  install: boolean
  /** Also what this project's own tests need (`--tests`; scripts/install-host-packages passes it in a checkout). */
  tests?: boolean
  write: (line: string) => void
  /** Where VMHARNESS_BACKEND and VMHARNESS_LIBVIRT_URI are read; default process.env. */
  env?: NodeJS.ProcessEnv
  /** What the distribution check and --install read and run; tests replace parts of it. */
  installer?: Partial<Installer>
}

export interface Installer {
  osReleasePath: string
  isRoot: () => boolean
  findAptGet: () => Promise<string | undefined>
  apt: (aptGet: string, args: string[]) => Promise<void>
}

const hostInstaller: Installer = {
  osReleasePath: '/etc/os-release',
  isRoot: () => process.getuid?.() === 0,
  findAptGet: () => findBinary('apt-get'),
  apt: async (aptGet, args) => {
    await execa(aptGet, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  },
}

/**
 * Says what the host lacks, which accelerator guests will get and whether the libvirt daemon
 * answers; with `install`, installs the packages (Debian's or Ubuntu's). Returns the exit code:
 * libvirt counts only with VMHARNESS_BACKEND=libvirt (the qemu backend needs none of it).
 */
export async function doctor(options: DoctorOptions): Promise<number> {
  const { write } = options
  const groups: RequirementGroup[] = options.tests ? ['run', 'test'] : ['run']
  const installer = { ...hostInstaller, ...options.installer }
  const distro = await readHostDistro(installer.osReleasePath)
  let checks = await checkRequirements(groups)
  let missing = missingPackages(checks)
  if (options.install && missing.length > 0) {
    const aptGet = await installer.findAptGet()
    const plan = planInstall(checks, { distro, root: installer.isRoot(), aptGet })
    if (plan.kind === 'refuse') {
      write(plan.reason)
      return 2
    }
    for (const line of plan.cannot) write(line)
    if (aptGet && plan.packages.length > 0) {
      write(`installing: ${plan.packages.join(' ')}`)
      await installer.apt(aptGet, ['update'])
      await installer.apt(aptGet, ['install', '-y', '--no-install-recommends', ...plan.packages])
      checks = await checkRequirements(groups)
      missing = missingPackages(checks)
    }
  }
  write('vmharness doctor')
  for (const line of describeChecks(checks, distro)) write(line)
  write('')
  const located = (id: RequirementId) => checks.find((check) => check.requirement.id === id)?.path
  write(await describeAccelerator(located('qemu-system'), located('guest-kernel')))
  write(await describeDiskIo(located('qemu-system')))
  const libvirt = await checkLibvirt(options.env ?? process.env)
  for (const line of libvirt.lines) write(line)
  const libvirtFails = libvirt.required && !libvirt.ok
  if (missing.length === 0 && !libvirtFails) {
    write(`\nready: this host can build the tiny and Debian images, boot guests and link them in networks${libvirt.required ? ', through libvirt' : ''}${options.tests ? ", and run this project's tests" : ''}`)
    return 0
  }
  if (missing.length === 0) {
    write('\nnot ready: VMHARNESS_BACKEND=libvirt, and libvirt is not usable (see above)')
    return 1
  }
  for (const line of describeMissing(checks, distro, options.tests === true)) write(line)
  if (libvirtFails) write('and VMHARNESS_BACKEND=libvirt, but libvirt is not usable (see above)')
  return 1
}

/** One line a requirement; a missing one names its package (Debian's, unless the host is Ubuntu). */
export function describeChecks(checks: RequirementCheck[], distro?: HostDistro): string[] {
  const width = Math.max(...checks.map((check) => check.requirement.what.length))
  return checks.map(({ requirement, path }) => {
    if (path) return `  ok       ${requirement.what.padEnd(width)}  ${path}`
    const found = distro?.family === 'ubuntu' ? packageOn(requirement, 'ubuntu') : { name: requirement.debianPackage }
    const source = 'name' in found ? `${distro?.family === 'ubuntu' ? 'Ubuntu' : 'Debian'} package ${found.name}` : 'no Ubuntu package (see below)'
    return `  MISSING  ${requirement.what.padEnd(width)}  ${source}, for ${requirement.neededFor}`
  })
}

/** The closing lines for what is missing: the packages, how to install them, and what no package provides here. */
export function describeMissing(checks: RequirementCheck[], distro: HostDistro, tests: boolean): string[] {
  const again = `  or: vmharness doctor --install${tests ? ' --tests' : ''}   (or the project script scripts/install-host-packages)`
  if (distro.family === 'ubuntu') {
    const packages: string[] = []
    const cannot: string[] = []
    for (const { requirement } of checks.filter((check) => !check.path)) {
      const found = packageOn(requirement, 'ubuntu')
      if (!('name' in found)) cannot.push(`no Ubuntu package provides ${requirement.what}: ${found.none}`)
      else if (!packages.includes(found.name)) packages.push(found.name)
    }
    const lines = packages.length > 0 ? [`\nmissing Ubuntu packages: ${packages.join(' ')}`, `install them (as root): ${installCommand(packages)}`, again] : ['']
    return [...lines, ...cannot]
  }
  const missing = missingPackages(checks)
  const lines = [`\nmissing Debian packages: ${missing.join(' ')}`, `install them (as root): ${installCommand(missing)}`, again]
  if (missing.includes('linux-image-cloud-amd64')) {
    lines.push('  no Debian cloud kernel (an Ubuntu runner, say)? set VMHARNESS_KERNEL=/path/to/vmlinuz, or give the spec a kernel;')
    lines.push('  its virtio modules are taken from /lib/modules/<release> when the kernel does not build them in')
  }
  return lines
}

// QEMU and the kernel as the checks found them, so that VMHARNESS_QEMU counts here as it does for VMs.
async function describeDiskIo(qemu: string | undefined): Promise<string> {
  if (!qemu) return 'disk I/O: not probed (needs qemu-system-x86_64)'
  const verdict = await diskIoVerdict(qemu)
  return `disk I/O: ${verdict.mode} (${verdict.reason})`
}

async function describeAccelerator(qemu: string | undefined, kernel: string | undefined): Promise<string> {
  if (!qemu || !kernel) return 'accelerator: not probed (needs qemu-system-x86_64 and a guest kernel)'
  const verdict = await acceleratorVerdict({ qemu, kernel })
  const source = verdict.probed ? 'probed now' : 'cached verdict or no probe needed; VMHARNESS_ACCEL=kvm|tcg forces one'
  return `accelerator: ${verdict.accel.toUpperCase()} (${verdict.reason}; ${source})`
}
