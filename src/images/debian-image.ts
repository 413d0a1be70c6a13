import { chmod, copyFile, cp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { PromiseCache } from '../common/promise-cache.js'
import { ImageError } from '../errors.js'
import { ContentHash } from '../common/content-hash.js'
import { locateRequired } from '../host/requirements.js'
import { packageRoot } from '../common/package-root.js'
import { debianSources } from './apt-sources.js'
import type { BootableImage } from './bootable-image.js'
import { cachedBuild } from './cached-build.js'
import { lineSplitter } from '../common/line-splitter.js'

const recipeVersion = '1'
const suite = 'bookworm'
const diskSize = '4G'
/** Debian's rule for package names; anything else is refused before apt sees it. */
const packageNamePattern = /^[a-z0-9][a-z0-9+.-]+$/
/** The image's unit that applies the seed's vmharness-networks and vmharness-hosts (images/debian). */
const seedNetworkUnit = 'vmharness-seed-network.service'

export interface DebianImageOptions {
  /** Extra Debian packages to install into the image at build time. */
  packages?: string[]
  /** A Debian mirror URL to build from (default: VMHARNESS_DEBIAN_MIRROR, else the host's apt sources). */
  mirror?: string
  signal?: AbortSignal
  onProgress?: (line: string) => void
}

interface DebianManifest {
  key: string
  suite: string
  packages: string[]
  sources: string[]
  kernelRelease: string
  builtAt: string
}

const resolved = new PromiseCache<string, BootableImage>()

/**
 * Returns once cloud-init and systemd's start-up have finished (sshd answers before cloud-init's
 * last stages). Start-up includes systemd-networkd-wait-online, which waits for the static
 * addresses of the seed's virtual networks. Exits 1 when cloud-init reports an error, printing its
 * `status --long`, or when the seed's network configuration failed, printing its log: a guest
 * whose keys, hostname or network may not be what the seed asked for is not ready. Exit 2 of
 * cloud-init 23.4 and later (done, with recoverable errors such as deprecated keys) counts as done.
 * Any other failed unit does not fail the boot: tests look at units themselves.
 */
export const debianReadyCommand = [
  'cloud-init status --wait >/dev/null 2>&1; cloud_init=$?',
  'systemctl is-system-running --wait >/dev/null 2>&1',
  'if [ "$cloud_init" -ne 0 ] && [ "$cloud_init" -ne 2 ]; then',
  '  echo "cloud-init reported an error (cloud-init status --wait exited $cloud_init):"',
  '  cloud-init status --long 2>&1',
  '  exit 1',
  'fi',
  `if systemctl is-failed --quiet ${seedNetworkUnit}; then`,
  `  echo "the seed's static addresses and /etc/hosts were not applied (${seedNetworkUnit} failed):"`,
  `  journalctl --unit ${seedNetworkUnit} --boot --output cat --no-pager 2>&1 | tail -n 20`,
  '  exit 1',
  'fi',
].join('\n')

/**
 * A Debian 12 guest built with mmdebstrap from the package mirror (systemd, openssh-server,
 * cloud-init and the packages asked for), booted with its own kernel and initrd. Its first boot
 * goes through cloud-init NoCloud like any cloud image. Built once per distinct input.
 */
export function debianImage(options: DebianImageOptions = {}): Promise<BootableImage> {
  const packages = checkPackages(options.packages ?? [])
  const key = JSON.stringify([packages, options.mirror ?? ''])
  return resolved.get(key, () => buildOrReuseDebian({ ...options, packages }))
}

export function checkPackages(packages: unknown): string[] {
  if (!Array.isArray(packages)) throw new ImageError('packages must be an array of Debian package names', 'debian')
  for (const name of packages) {
    if (typeof name !== 'string' || !packageNamePattern.test(name)) {
      throw new ImageError(`'${String(name)}' is not a Debian package name (lower-case letters, digits, '+', '-', '.')`, 'debian')
    }
  }
  return [...new Set(packages as string[])].sort()
}

/** The Debian image's cache key for a package list, from its recipe, packages and apt sources alone: nothing is built. */
export async function debianImageKey(options: Pick<DebianImageOptions, 'packages' | 'mirror'> = {}): Promise<string> {
  return (await debianInputs({ ...options, packages: checkPackages(options.packages ?? []) })).key
}

async function debianInputs(options: Pick<DebianImageOptions, 'mirror'> & { packages: string[] }) {
  const recipeDir = join(packageRoot(), 'images', 'debian')
  const basePackages = await recipeList(recipeDir, 'packages')
  const packages = [...new Set([...basePackages, ...options.packages])]
  const sources = await debianSources(suite, options.mirror)
  return { recipeDir, packages, sources, key: await recipeKey(recipeDir, packages, sources) }
}

async function buildOrReuseDebian(options: DebianImageOptions & { packages: string[] }): Promise<BootableImage> {
  const { recipeDir, packages, sources, key } = await debianInputs(options)
  const { dir, manifest } = await cachedBuild<DebianManifest>(
    'images',
    `debian-${key}`,
    async (work) => {
      const progress = (line: string) => options.onProgress?.(`debian image: ${line}`)
      progress(`building ${suite} with ${packages.length} packages from ${sources[0]?.split(' ')[1] ?? 'the mirror'} (about a minute)`)
      return buildDebian(work, { recipeDir, packages, sources, key, progress, signal: options.signal })
    },
    options.signal,
    options.onProgress,
  )
  return {
    name: 'debian',
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    disk: join(dir, 'disk.qcow2'),
    kernelArgs: ['console=ttyS0', 'root=/dev/vda', 'rw', 'net.ifnames=0', 'panic=-1', 'init_on_free=1'],
    // sshd starts before cloud-init's last stages; a VM is handed over (and saved) only after them.
    readyCommand: debianReadyCommand,
    sshUser: 'root',
    description: `Debian ${suite}, kernel ${manifest.kernelRelease}`,
  }
}

async function recipeList(recipeDir: string, name: string): Promise<string[]> {
  return (await readFile(join(recipeDir, name), 'utf8')).split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'))
}

async function recipeKey(recipeDir: string, packages: string[], sources: string[]): Promise<string> {
  const hash = new ContentHash().text('recipe', recipeVersion).text('suite', suite).text('packages', packages.join(' ')).text('sources', sources.join('\n'))
  const entries = await readdir(recipeDir, { withFileTypes: true, recursive: true })
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name)).sort()
  for (const file of files) await hash.file(`recipe:${file.slice(recipeDir.length)}`, file)
  return hash.digest()
}

interface BuildInputs {
  recipeDir: string
  packages: string[]
  sources: string[]
  key: string
  progress: (line: string) => void
  signal?: AbortSignal
}

async function buildDebian(work: string, inputs: BuildInputs): Promise<DebianManifest> {
  if (process.getuid?.() !== 0) {
    throw new ImageError('building needs root (mmdebstrap writes a root-owned tree and runs package scripts in a chroot); build it once as root: vmharness images build debian', 'debian')
  }
  const mmdebstrap = await locateRequired('mmdebstrap')
  const rootfs = join(work, 'rootfs')
  const bootstrap = execa(mmdebstrap, ['--variant=apt', `--include=${inputs.packages.join(',')}`, suite, rootfs, ...inputs.sources], {
    stdin: 'ignore',
    cancelSignal: inputs.signal,
    all: true,
    reject: false,
  })
  const lines: string[] = []
  bootstrap.all?.on('data', lineSplitter((line) => {
    lines.push(line)
    if (line.startsWith('I: ')) inputs.progress(line.slice(3))
  }))
  const result = await bootstrap
  if (result.exitCode !== 0) {
    throw new ImageError(`mmdebstrap failed (exit ${result.exitCode ?? result.signal}); its last lines:\n${lines.slice(-15).join('\n')}`, 'debian')
  }
  inputs.progress('configuring the guest')
  await customise(rootfs, inputs.recipeDir)
  const kernelRelease = await copyBootFiles(rootfs, work)
  inputs.progress(`writing a ${diskSize} ext4 disk`)
  const raw = join(work, 'disk.raw')
  await execa(await locateRequired('mkfs-ext4'), ['-q', '-F', '-L', 'vmharness-root', '-d', rootfs, raw, diskSize], { stdin: 'ignore' })
  await rm(rootfs, { recursive: true, force: true })
  await execa(await locateRequired('qemu-img'), ['convert', '-f', 'raw', '-O', 'qcow2', raw, join(work, 'disk.qcow2')], { stdin: 'ignore' })
  await rm(raw, { force: true })
  await chmod(join(work, 'disk.qcow2'), 0o444)
  inputs.progress('done')
  return { key: inputs.key, suite, packages: inputs.packages, sources: inputs.sources, kernelRelease, builtAt: new Date().toISOString() }
}

/** The recipe's files over the tree, no baked-in host keys (each seed pins its own), units enabled and masked offline. */
async function customise(rootfs: string, recipeDir: string): Promise<void> {
  await cp(join(recipeDir, 'rootfs'), rootfs, { recursive: true })
  for (const entry of await readdir(join(rootfs, 'etc/ssh'))) {
    if (entry.startsWith('ssh_host_')) await rm(join(rootfs, 'etc/ssh', entry))
  }
  const chroot = await locateRequired('chroot')
  const enabled = await recipeList(recipeDir, 'units-enabled')
  const masked = await recipeList(recipeDir, 'units-masked')
  if (enabled.length > 0) await execa(chroot, [rootfs, 'systemctl', 'enable', ...enabled], { stdin: 'ignore' })
  if (masked.length > 0) await execa(chroot, [rootfs, 'systemctl', 'mask', ...masked], { stdin: 'ignore' })
  await writeFile(join(rootfs, 'etc/machine-id'), '')
  for (const cache of ['var/lib/apt/lists', 'var/cache/apt']) {
    for (const entry of await readdir(join(rootfs, cache)).catch(() => [] as string[])) {
      if (entry !== 'partial' && entry !== 'archives' && entry !== 'auxfiles') await rm(join(rootfs, cache, entry), { recursive: true, force: true })
    }
  }
}

async function copyBootFiles(rootfs: string, work: string): Promise<string> {
  const boot = await readdir(join(rootfs, 'boot'))
  const kernel = boot.find((entry) => entry.startsWith('vmlinuz-'))
  if (!kernel) throw new ImageError('the built tree has no /boot/vmlinuz-*: is linux-image-cloud-amd64 in the package list?', 'debian')
  const release = kernel.slice('vmlinuz-'.length)
  const initrd = `initrd.img-${release}`
  if (!boot.includes(initrd)) throw new ImageError(`the built tree has no /boot/${initrd}`, 'debian')
  await copyFile(join(rootfs, 'boot', kernel), join(work, 'vmlinuz'))
  await copyFile(join(rootfs, 'boot', initrd), join(work, 'initrd.img'))
  return release
}
