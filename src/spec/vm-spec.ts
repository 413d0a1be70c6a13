import { readFileSync } from 'node:fs'
import { totalmem } from 'node:os'
import { join } from 'node:path'
import { SpecError } from '../errors.js'
import { checkAttachments, type NetworkAttachment, type NetworkChoice } from './network-attachment.js'

export type AcceleratorChoice = 'kvm' | 'tcg' | 'auto'
export type MachineType = 'pc' | 'microvm'
/** 'max': every CPU feature QEMU can give the guest, AMD SVM included under TCG (a guest that runs KVM itself). */
export type CpuModel = 'default' | 'max'
export const backendNames = ['qemu', 'libvirt', 'noop'] as const
export type BackendName = (typeof backendNames)[number]

/** An image given by its parts instead of by name. `disk` is never written: each VM runs on an overlay. */
export interface ImageFiles {
  disk: string
  kernel?: string
  initrd?: string
}

/** A built image with options: `{ name: 'debian', packages: ['nginx'] }` installs nginx at build time. */
export interface ImageRecipe {
  name: string
  packages?: string[]
}

export type ImageChoice = string | ImageFiles | ImageRecipe

export interface VmSpec {
  /** Shown in logs and errors; any characters (it is never passed through a shell). */
  name?: string
  /** 'tiny', 'debian', a recipe with options, or the files of an image. May be left out when `restoreFrom` is given. */
  image?: ImageChoice
  /** MiB of guest memory. */
  memory?: number
  cpus?: number
  accel?: AcceleratorChoice
  machine?: MachineType
  /**
   * The guest's CPU model under TCG: 'default' (QEMU's own, the fastest here) or 'max', which adds
   * AMD SVM with nested paging so that the guest can run KVM itself (the KVM lane). Under KVM the
   * guest always gets the host's CPU.
   */
  cpuModel?: CpuModel
  /** Which backend runs the VM; else VMHARNESS_BACKEND; else 'auto' (what the host offers). */
  backend?: BackendName | 'auto'
  /** From process start to the first SSH command; scaled up under TCG when left unset. */
  bootTimeoutMs?: number
  /** A guest kernel to build the tiny image with (hosts without Debian's cloud kernel). */
  kernel?: string
  /** Extra words for the guest kernel command line. */
  kernelArgs?: string[]
  /**
   * The directory of an external snapshot to start from instead of booting: the VM resumes
   * exactly where the saved one was (a clone). Memory, cpus and machine must match it, and
   * default to what it was saved with.
   */
  restoreFrom?: string
  /**
   * Virtual networks to join: a NIC on each, with static addresses (machine n on network k is
   * 192.168.k.n and 2001:db8:k::n) and /etc/hosts names for the machines on it. `Vm.start` takes
   * `Network` objects; resolved specs carry the attachments.
   */
  networks?: (NetworkChoice | NetworkAttachment)[]
  /**
   * Lets the guest reach the outside world through its management NIC (a setup that runs
   * `apt-get install`, say). Off by default: the guest reaches neither the world nor the host.
   */
  outsideAccess?: boolean
  /**
   * The libvirt backend's host: a URI such as qemu:///system or qemu+ssh://user@host/system, or
   * several separated by commas (vitest worker i uses host i mod N). Else VMHARNESS_LIBVIRT_URI,
   * else qemu:///system.
   */
  libvirtUri?: string
}

export interface ResolvedSpec {
  name: string
  image: ImageChoice
  memory: number
  cpus: number
  accel: AcceleratorChoice
  machine: MachineType
  cpuModel: CpuModel
  backend: BackendName | 'auto'
  bootTimeoutMs: number | undefined
  kernel: string | undefined
  kernelArgs: string[]
  restoreFrom: string | undefined
  networks: NetworkAttachment[]
  outsideAccess: boolean
  libvirtUri: string | undefined
}

const limits = { memoryMin: 64, memoryMax: 1024 * 1024, cpusMax: 256 }
/** What each built image boots well with under TCG (HOST.md): Debian runs systemd and cloud-init's Python. */
const imageDefaults: Record<string, { memory: number; cpus: number }> = { debian: { memory: 512, cpus: 2 } }
const fallbackDefaults = { memory: 256, cpus: 1 }

/** Checks a spec before anything starts and fills in defaults; every problem is a SpecError naming the field. */
export function resolveSpec(spec: VmSpec, env: NodeJS.ProcessEnv = process.env): ResolvedSpec {
  if (typeof spec !== 'object' || spec === null) throw new SpecError('a VM spec must be an object', 'spec')
  if (spec.restoreFrom !== undefined && (typeof spec.restoreFrom !== 'string' || spec.restoreFrom.length === 0 || spec.restoreFrom.includes('\0'))) {
    throw new SpecError('must be the path of a saved snapshot directory', 'restoreFrom')
  }
  const image = spec.image === undefined && spec.restoreFrom ? { disk: join(spec.restoreFrom, 'disk.qcow2') } : checkImage(spec.image)
  const saved = spec.restoreFrom ? savedLaunch(spec.restoreFrom) : undefined
  const defaults = saved ?? imageDefaults[typeof image === 'string' ? image : 'name' in image ? image.name : ''] ?? fallbackDefaults
  const memory = checkInteger(spec.memory ?? defaults.memory, 'memory', limits.memoryMin, limits.memoryMax, 'MiB')
  const cpus = checkInteger(spec.cpus ?? defaults.cpus, 'cpus', 1, limits.cpusMax, 'vCPUs')
  const hostMiB = Math.floor(totalmem() / 1024 / 1024)
  if (memory > hostMiB) throw new SpecError(`${memory} MiB is more than this host has (${hostMiB} MiB in all): ask for less`, 'memory')
  const accel = checkChoice(spec.accel ?? (env.VMHARNESS_ACCEL as AcceleratorChoice | undefined) ?? 'auto', 'accel', ['kvm', 'tcg', 'auto'])
  // A disk without a kernel boots through the firmware and its own bootloader: only 'pc' has one.
  const firmwareBoot = typeof image === 'object' && 'disk' in image && image.kernel === undefined && !spec.restoreFrom
  const machine = checkChoice(spec.machine ?? saved?.machine ?? (firmwareBoot ? 'pc' : 'microvm'), 'machine', ['pc', 'microvm'])
  if (firmwareBoot && machine === 'microvm') {
    throw new SpecError("'microvm' boots only a kernel given to it: add image.kernel (and initrd), or use machine: 'pc' to boot the disk's own bootloader", 'machine')
  }
  const cpuModel = checkChoice(spec.cpuModel ?? saved?.cpuModel ?? 'default', 'cpuModel', ['default', 'max'])
  const backend = checkChoice(spec.backend ?? saved?.backend ?? (env.VMHARNESS_BACKEND as BackendName | undefined) ?? 'auto', spec.backend ? 'backend' : 'backend (from VMHARNESS_BACKEND)', [...backendNames, 'auto'])
  // A saved state is loaded by the backend that wrote it, and a libvirt one on its own host.
  if (saved?.backend && backend !== saved.backend && backend !== 'auto') {
    throw new SpecError(`the snapshot in ${spec.restoreFrom} was saved by the ${saved.backend} backend, so only that backend can start a clone of it: leave backend out, or set it to '${saved.backend}'`, 'backend')
  }
  const name = spec.name ?? (typeof image === 'string' ? image : 'name' in image ? image.name : 'vm')
  if (typeof name !== 'string' || name.length === 0 || name.length > 128 || name.includes('\0')) {
    throw new SpecError('must be a non-empty string of at most 128 characters', 'name')
  }
  if (spec.bootTimeoutMs !== undefined) checkInteger(spec.bootTimeoutMs, 'bootTimeoutMs', 1, 3_600_000, 'ms')
  if (spec.kernelArgs !== undefined && (!Array.isArray(spec.kernelArgs) || spec.kernelArgs.some((arg) => typeof arg !== 'string'))) {
    throw new SpecError('must be an array of strings', 'kernelArgs')
  }
  return {
    name,
    image,
    memory,
    cpus,
    accel,
    machine,
    cpuModel,
    backend,
    bootTimeoutMs: spec.bootTimeoutMs,
    kernel: spec.kernel,
    kernelArgs: spec.kernelArgs ?? [],
    restoreFrom: spec.restoreFrom,
    networks: checkAttachments(spec.networks),
    outsideAccess: checkBoolean(spec.outsideAccess ?? false, 'outsideAccess'),
    libvirtUri: checkLibvirtUri(spec.libvirtUri !== undefined ? spec.libvirtUri : saved?.libvirtUri),
  }
}

function checkLibvirtUri(value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.trim().length === 0 || /[\0\n]/.test(value)) throw new SpecError('must be a libvirt URI such as qemu:///system or qemu+ssh://user@host/system (or several, comma-separated)', 'libvirtUri')
  return value
}

function checkBoolean(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw new SpecError(`must be true or false, got ${String(value)}`, field)
  return value
}

/**
 * A clone's memory, cpus and machine default to those it was saved with (they must match), and
 * its backend (and libvirt host) to the one that saved it. An unreadable record gives no
 * defaults: starting the clone then fails with the snapshot's own error.
 */
function savedLaunch(dir: string): { memory: number; cpus: number; machine: MachineType; cpuModel: 'default' | 'max'; backend: BackendName; libvirtUri: string | undefined } | undefined {
  try {
    const meta = JSON.parse(readFileSync(join(dir, 'snapshot.json'), 'utf8')) as { backend?: unknown; uri?: unknown; launch?: { memoryMiB?: unknown; cpus?: unknown; machine?: unknown; cpuModel?: unknown } }
    const launch = meta.launch
    if (typeof launch?.memoryMiB !== 'number' || typeof launch.cpus !== 'number' || (launch.machine !== 'pc' && launch.machine !== 'microvm')) return undefined
    // The QEMU backend's record names no backend.
    const libvirt = meta.backend === 'libvirt' && typeof meta.uri === 'string'
    return { memory: launch.memoryMiB, cpus: launch.cpus, machine: launch.machine, cpuModel: launch.cpuModel === 'max' ? 'max' : 'default', backend: libvirt ? 'libvirt' : 'qemu', libvirtUri: libvirt ? (meta.uri as string) : undefined }
  } catch {
    return undefined
  }
}

function checkImage(image: unknown): ImageChoice {
  if (typeof image === 'string' && image.length > 0) return image
  if (typeof image === 'object' && image !== null && typeof (image as ImageRecipe).name === 'string' && (image as ImageRecipe).name.length > 0) {
    const packages = (image as ImageRecipe).packages
    if (packages !== undefined && (!Array.isArray(packages) || packages.some((name) => typeof name !== 'string'))) {
      throw new SpecError('must be an array of Debian package names', 'image.packages')
    }
    return image as ImageRecipe
  }
  if (typeof image === 'object' && image !== null && typeof (image as ImageFiles).disk === 'string') {
    const files = image as ImageFiles
    for (const key of ['kernel', 'initrd'] as const) {
      if (files[key] !== undefined && typeof files[key] !== 'string') throw new SpecError('must be a file path', `image.${key}`)
    }
    return files
  }
  throw new SpecError("is missing: give an image name ('tiny', 'debian'), { name: 'debian', packages: [...] }, or your own files { disk, kernel?, initrd? }", 'image')
}

function checkInteger(value: unknown, field: string, min: number, max: number, unit: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new SpecError(`must be a whole number of ${unit} from ${min} to ${max}, got ${String(value)}`, field)
  }
  return value
}

function checkChoice<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
  if (!choices.includes(value as T)) {
    throw new SpecError(`must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got '${String(value)}'`, field)
  }
  return value as T
}
