import { constants } from 'node:fs'
import { access, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { release } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { HostError } from '../errors.js'
import { ContentHash } from '../common/content-hash.js'
import { cacheSubdir } from './cache-dir.js'

export interface AcceleratorVerdict {
  accel: 'kvm' | 'tcg'
  reason: string
  /** Whether a probe boot ran now (false: taken from the per-host cache or decided without booting). */
  probed: boolean
}

/**
 * A probe guest that prints nothing for this long has stalled: on a paravirtual KVM (PVM) every
 * ordinary guest hangs silently after the real-mode setup. A real KVM passes in under a second.
 */
const probeSilenceMs = 8_000
/**
 * The longest a probe may take while it keeps printing: a nested KVM (KVM inside a TCG guest, the
 * KVM lane) needs far more than the old fixed 8 s to reach the marker, and it does work.
 */
const probeDeadlineMs = 120_000
const probeMarker = /Kernel panic|VFS: Unable to mount root|Run \/init/

/**
 * KVM only where a probe boot proves it: an openable /dev/kvm is not proof (nested or
 * paravirtual KVM can accept KVM_CREATE_VM and still hang every ordinary guest).
 * The verdict is cached per host (kernel, CPU, QEMU, guest kernel).
 */
export async function acceleratorVerdict(options: { qemu: string; kernel: string | undefined; refresh?: boolean }): Promise<AcceleratorVerdict> {
  if (!options.kernel) return { accel: 'tcg', reason: 'no guest kernel to run the KVM probe with (install linux-image-cloud-amd64)', probed: false }
  const probeOptions = { qemu: options.qemu, kernel: options.kernel }
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return { accel: 'tcg', reason: code === 'ENOENT' ? '/dev/kvm does not exist' : `/dev/kvm cannot be opened (${code}); add this user to the kvm group`, probed: false }
  }
  const cacheFile = join(await cacheSubdir('host'), `accel-${await hostKey(probeOptions)}.json`)
  if (!options.refresh) {
    const cached = await readFile(cacheFile, 'utf8').then((text) => JSON.parse(text) as AcceleratorVerdict, () => undefined)
    if (cached) return { ...cached, probed: false }
  }
  const verdict = await probeKvm(probeOptions)
  await mkdir(join(cacheFile, '..'), { recursive: true })
  await writeFile(cacheFile, JSON.stringify(verdict))
  return verdict
}

/** Resolves `accel: 'auto' | 'kvm' | 'tcg'` against the verdict; forcing KVM where it fails is a HostError. */
export async function chooseAccelerator(choice: 'auto' | 'kvm' | 'tcg', probe: () => Promise<AcceleratorVerdict>): Promise<'kvm' | 'tcg'> {
  if (choice === 'tcg') return 'tcg'
  const verdict = await probe()
  if (choice === 'kvm' && verdict.accel !== 'kvm') {
    throw new HostError(`KVM was asked for (accel: 'kvm'), but it does not work on this host: ${verdict.reason}`, "use accel: 'auto' or 'tcg' (or VMHARNESS_ACCEL=tcg)")
  }
  if (verdict.accel === 'tcg') warnOnce(verdict.reason)
  return verdict.accel
}

let warned = false
function warnOnce(reason: string): void {
  if (warned || process.env.VMHARNESS_QUIET_ACCEL) return
  warned = true
  process.stderr.write(`vmharness: KVM is not usable here (${reason}); guests run under TCG (software emulation, several times slower)\n`)
}

/** Boots the kernel under KVM with no root disk: reaching the marker proves KVM runs ordinary guests. Exported for tests. */
export async function probeKvm(options: { qemu: string; kernel: string }, limits = { silenceMs: probeSilenceMs, deadlineMs: probeDeadlineMs }): Promise<AcceleratorVerdict> {
  const started = Date.now()
  // earlyprintk: the kernel writes from its first line on, so a slow (nested) KVM shows progress
  // long before the console driver starts.
  const probe = execa(
    options.qemu,
    ['-nodefaults', '-no-user-config', '-display', 'none', '-machine', 'pc', '-accel', 'kvm', '-cpu', 'host', '-m', '128M', '-kernel', options.kernel, '-append', 'console=ttyS0 earlyprintk=serial panic=-1 root=/dev/vmharness-probe', '-serial', 'stdio', '-no-reboot'],
    { reject: false, stdin: 'ignore', timeout: limits.deadlineMs, all: true },
  )
  let stalled = false
  let silence: NodeJS.Timeout | undefined
  const watchSilence = () => {
    clearTimeout(silence)
    silence = setTimeout(() => {
      stalled = true
      probe.kill('SIGKILL')
    }, limits.silenceMs)
  }
  watchSilence()
  probe.all?.on('data', watchSilence)
  const result = await probe.finally(() => clearTimeout(silence))
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  if (probeMarker.test(result.all ?? '')) return { accel: 'kvm', reason: `a probe boot under KVM reached the kernel in ${seconds} s`, probed: true }
  if (stalled || result.timedOut) {
    const how = stalled ? `stopped printing for ${limits.silenceMs / 1000} s` : `did not reach its end in ${limits.deadlineMs / 1000} s`
    return { accel: 'tcg', reason: `/dev/kvm opens, but a probe guest under KVM ${how} (after ${seconds} s; nested or paravirtual KVM?)`, probed: true }
  }
  const firstError = (result.stderr || result.all || '').split('\n').find((line) => line.trim()) ?? `exit code ${result.exitCode}`
  return { accel: 'tcg', reason: `QEMU cannot run a guest under KVM: ${firstError.trim()}`, probed: true }
}

async function hostKey(options: { qemu: string; kernel: string }): Promise<string> {
  const cpu = (await readFile('/proc/cpuinfo', 'utf8').catch(() => '')).match(/model name\s*:\s*(.*)/)?.[1] ?? ''
  const kvmModules = (await readFile('/proc/modules', 'utf8').catch(() => ''))
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.includes('kvm'))
    .join(',')
  const qemuStat = await stat(options.qemu)
  const kernelStat = await stat(options.kernel)
  return new ContentHash()
    .text('release', release())
    .text('cpu', cpu)
    .text('modules', kvmModules)
    .text('qemu', `${options.qemu}:${qemuStat.size}:${qemuStat.mtimeMs}`)
    .text('kernel', `${options.kernel}:${kernelStat.size}`)
    .digest()
}
