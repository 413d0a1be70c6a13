import { execa } from 'execa'
import { acceleratorVerdict } from '../host/accelerator.js'
import { diskIoVerdict } from '../hypervisor/qemu/disk-io.js'
import { checkRequirements, installCommand, missingPackages, type RequirementCheck, type RequirementGroup, type RequirementId } from '../host/requirements.js'
import { checkLibvirt } from './libvirt-check.js'

export interface DoctorOptions {
  install: boolean
  /** Also what this project's own tests need (`--tests`; scripts/install-host-packages passes it in a checkout). */
  tests?: boolean
  write: (line: string) => void
  /** Where VMHARNESS_BACKEND and VMHARNESS_LIBVIRT_URI are read; default process.env. */
  env?: NodeJS.ProcessEnv
}

/**
 * Says what the host lacks, which accelerator guests will get and whether the libvirt daemon
 * answers; with `install`, installs the Debian packages. Returns the exit code: libvirt counts
 * only with VMHARNESS_BACKEND=libvirt (the qemu backend needs none of it).
 */
export async function doctor(options: DoctorOptions): Promise<number> {
  const { write } = options
  const groups: RequirementGroup[] = options.tests ? ['run', 'test'] : ['run']
  let checks = await checkRequirements(groups)
  let missing = missingPackages(checks)
  if (options.install && missing.length > 0) {
    if (process.getuid?.() !== 0) {
      write(`vmharness doctor --install must run as root to install: ${missing.join(' ')}`)
      return 2
    }
    write(`installing: ${missing.join(' ')}`)
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    await execa('apt-get', ['update'], { stdio: 'inherit', env })
    await execa('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: 'inherit', env })
    checks = await checkRequirements(groups)
    missing = missingPackages(checks)
  }
  write('vmharness doctor')
  for (const line of describeChecks(checks)) write(line)
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
  write(`\nmissing Debian packages: ${missing.join(' ')}`)
  write(`install them (as root): ${installCommand(missing)}`)
  write(`  or: vmharness doctor --install${options.tests ? ' --tests' : ''}   (or the project script scripts/install-host-packages)`)
  if (missing.includes('linux-image-cloud-amd64')) {
    write('  no Debian cloud kernel (an Ubuntu runner, say)? set VMHARNESS_KERNEL=/path/to/vmlinuz, or give the spec a kernel;')
    write('  its virtio modules are taken from /lib/modules/<release> when the kernel does not build them in')
  }
  if (libvirtFails) write('and VMHARNESS_BACKEND=libvirt, but libvirt is not usable (see above)')
  return 1
}

export function describeChecks(checks: RequirementCheck[]): string[] {
  const width = Math.max(...checks.map((check) => check.requirement.what.length))
  return checks.map(({ requirement, path }) =>
    path
      ? `  ok       ${requirement.what.padEnd(width)}  ${path}`
      : `  MISSING  ${requirement.what.padEnd(width)}  Debian package ${requirement.debianPackage}, for ${requirement.neededFor}`,
  )
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
