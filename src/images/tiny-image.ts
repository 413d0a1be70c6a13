import { chmod, copyFile, cp, mkdir, readFile, readdir, realpath, rm, symlink, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { execa } from 'execa'
import { PromiseCache } from '../common/promise-cache.js'
import { ImageError } from '../errors.js'
import { kernelRelease } from '../host/guest-kernel.js'
import { locateRequired } from '../host/requirements.js'
import type { BootableImage } from './bootable-image.js'
import { cachedBuild } from './cached-build.js'
import { ContentHash } from '../common/content-hash.js'
import { cpioArchive, type CpioEntry } from './cpio-newc.js'
import { packageRoot } from '../common/package-root.js'
import { sharedLibraries } from './shared-libraries.js'

const recipeVersion = '1'
export const tinyReadyMarker = 'VMHARNESS_READY'
export const tinyFailureMarker = 'VMHARNESS_BOOT_FAILED'

interface TinyManifest {
  key: string
  kernelRelease: string
  modules: string[]
  builtAt: string
}

interface KernelModule {
  name: string
  path: string
}

interface TinyInputs {
  kernel: string
  /** In load order, each after what it depends on. */
  modules: KernelModule[]
  busybox: string
  dropbear: string
  dropbearconvert: string
  sftpServer: string
  mkfs: string
  qemuImg: string
}

const resolved = new PromiseCache<string, BootableImage>()

/**
 * Builds (once per distinct input) and returns the tiny guest: Debian's cloud kernel, busybox,
 * dropbear. Hashing the inputs reads ~20 MB, so the answer is kept for the life of the process.
 */
export function tinyImage(options: { kernel?: string; signal?: AbortSignal; onProgress?: (line: string) => void } = {}): Promise<BootableImage> {
  const key = options.kernel ?? ''
  return resolved.get(key, () => buildOrReuseTiny(options))
}

async function buildOrReuseTiny(options: { kernel?: string; signal?: AbortSignal; onProgress?: (line: string) => void }): Promise<BootableImage> {
  const recipeDir = join(packageRoot(), 'images', 'tiny')
  const inputs = await locateInputs(options.kernel, recipeDir)
  const key = await inputKey(inputs, recipeDir)
  const { dir } = await cachedBuild<TinyManifest>(
    'images',
    `tiny-${key}`,
    async (work) => {
      options.onProgress?.(`building the tiny image (${kernelRelease(inputs.kernel)})`)
      return buildTiny(work, inputs, recipeDir, key)
    },
    options.signal,
    options.onProgress,
  )
  return {
    name: 'tiny',
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    disk: join(dir, 'disk.qcow2'),
    // init_on_free: freed pages are zeroed, and QEMU saves zero pages as a flag: a third less RAM state per snapshot.
    kernelArgs: ['console=ttyS0', 'root=/dev/vda', 'rw', 'quiet', 'panic=-1', 'mitigations=off', 'no_timer_check', 'cryptomgr.notests', 'init_on_free=1'],
    readyMarker: tinyReadyMarker,
    failureMarker: tinyFailureMarker,
    sshUser: 'root',
  }
}

/** The tiny image's cache key for a kernel (the host's by default), from its inputs alone: nothing is built. */
export async function tinyImageKey(kernel?: string): Promise<string> {
  const recipeDir = join(packageRoot(), 'images', 'tiny')
  return inputKey(await locateInputs(kernel, recipeDir), recipeDir)
}

async function locateInputs(kernelOverride: string | undefined, recipeDir: string): Promise<TinyInputs> {
  const kernel = kernelOverride ?? (await locateRequired('guest-kernel'))
  if (!existsSync(kernel)) throw new ImageError(`kernel ${kernel} does not exist`, 'tiny')
  return {
    kernel,
    modules: await moduleFiles(join('/lib/modules', kernelRelease(kernel)), recipeDir),
    busybox: await locateRequired('busybox-static'),
    dropbear: await locateRequired('dropbear'),
    dropbearconvert: await locateRequired('dropbearconvert'),
    sftpServer: await locateRequired('sftp-server'),
    mkfs: await locateRequired('mkfs-ext4'),
    qemuImg: await locateRequired('qemu-img'),
  }
}

/** The modules the recipe names, each preceded by what it depends on (from modules.dep), in load order. */
async function moduleFiles(modulesDir: string, recipeDir: string): Promise<KernelModule[]> {
  const wanted = (await readFile(join(recipeDir, 'modules-order'), 'utf8')).split('\n').filter(Boolean)
  const depFile = await readFile(join(modulesDir, 'modules.dep'), 'utf8').catch(() => '')
  const dependencies = new Map<string, string[]>()
  for (const line of depFile.split('\n')) {
    const [module, deps] = line.split(':')
    if (module && deps !== undefined) dependencies.set(module, deps.trim().split(/\s+/).filter(Boolean))
  }
  const relativeByName = new Map([...dependencies.keys()].map((relative) => [moduleName(relative), relative]))
  const ordered: string[] = []
  const visit = (relative: string) => {
    if (ordered.includes(relative)) return
    for (const dep of dependencies.get(relative) ?? []) visit(dep)
    ordered.push(relative)
  }
  for (const name of wanted) {
    const relative = relativeByName.get(name) ?? relativeByName.get(name.replaceAll('-', '_'))
    if (relative) visit(relative)
  }
  return ordered.map((relative) => ({ name: moduleName(relative), path: join(modulesDir, relative) }))
}

function moduleName(relativePath: string): string {
  return relativePath.slice(relativePath.lastIndexOf('/') + 1).replace(/\.ko(\.[gx]z|\.zst)?$/, '')
}

async function inputKey(inputs: TinyInputs, recipeDir: string): Promise<string> {
  const hash = new ContentHash().text('recipe', recipeVersion)
  for (const file of await listFiles(recipeDir)) await hash.file(`recipe:${file.slice(recipeDir.length)}`, file)
  // The tools that only assemble the image (mkfs, qemu-img) do not change what the guest runs.
  for (const label of ['kernel', 'busybox', 'dropbear', 'dropbearconvert', 'sftpServer'] as const) await hash.file(label, inputs[label])
  for (const module of inputs.modules) await hash.file(`module:${module.name}`, module.path)
  return hash.digest()
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true })
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort()
}

async function buildTiny(work: string, inputs: TinyInputs, recipeDir: string, key: string): Promise<TinyManifest> {
  const modules = inputs.modules
  await copyFile(inputs.kernel, join(work, 'vmlinuz'))
  await writeFile(join(work, 'initrd.img'), gzipSync(await initramfs(inputs, recipeDir, modules), { level: 6 }))
  const rootfs = join(work, 'rootfs')
  await stageRootfs(rootfs, inputs, recipeDir)
  const raw = join(work, 'disk.raw')
  await execa(inputs.mkfs, ['-q', '-F', '-L', 'vmharness-root', '-E', 'root_owner=0:0', '-d', rootfs, raw, '128M'])
  await execa(inputs.qemuImg, ['convert', '-f', 'raw', '-O', 'qcow2', raw, join(work, 'disk.qcow2')])
  await rm(rootfs, { recursive: true, force: true })
  await rm(raw, { force: true })
  await chmod(join(work, 'disk.qcow2'), 0o444)
  return { key, kernelRelease: kernelRelease(inputs.kernel), modules: modules.map((m) => m.name), builtAt: new Date().toISOString() }
}

async function initramfs(inputs: TinyInputs, recipeDir: string, modules: KernelModule[]): Promise<Buffer> {
  const entries: CpioEntry[] = [
    ...['dev', 'proc', 'sys', 'newroot', 'bin', 'etc', 'lib', 'lib/modules'].map((path): CpioEntry => ({ path, type: 'dir' })),
    { path: 'dev/console', type: 'char', major: 5, minor: 1, mode: 0o600 },
    { path: 'bin/busybox', type: 'file', data: await readFile(inputs.busybox), mode: 0o755 },
    { path: 'bin/sh', type: 'symlink', target: 'busybox' },
    { path: 'init', type: 'file', data: await readFile(join(recipeDir, 'initramfs-init')), mode: 0o755 },
    { path: 'etc/modules-order', type: 'file', data: Buffer.from(modules.map((m) => m.name).join('\n') + '\n') },
  ]
  for (const module of modules) entries.push({ path: `lib/modules/${module.name}.ko`, type: 'file', data: await readFile(module.path) })
  return cpioArchive(entries)
}

async function stageRootfs(root: string, inputs: TinyInputs, recipeDir: string): Promise<void> {
  await cp(join(recipeDir, 'rootfs'), root, { recursive: true })
  for (const dir of ['usr/bin', 'usr/lib/openssh', 'usr/lib64', 'proc', 'sys', 'dev', 'run', 'tmp', 'home', 'var/log', 'etc/dropbear']) {
    await mkdir(join(root, dir), { recursive: true })
  }
  await mkdir(join(root, 'root'), { mode: 0o700 })
  await chmod(join(root, 'tmp'), 0o1777)
  for (const [link, target] of [['bin', 'usr/bin'], ['sbin', 'usr/bin'], ['lib', 'usr/lib'], ['lib64', 'usr/lib64'], ['usr/sbin', 'bin']]) {
    await symlink(target as string, join(root, link as string))
  }
  await copyFile(inputs.busybox, join(root, 'usr/bin/busybox'))
  const { stdout } = await execa(inputs.busybox, ['--list'])
  for (const applet of stdout.split('\n').filter(Boolean)) {
    if (!existsSync(join(root, 'usr/bin', applet))) await symlink('busybox', join(root, 'usr/bin', applet))
  }
  const programs: [string, string][] = [
    [inputs.dropbear, 'usr/bin/dropbear'],
    [inputs.dropbearconvert, 'usr/bin/dropbearconvert'],
    [inputs.sftpServer, 'usr/lib/sftp-server'],
  ]
  for (const [hostPath, guestPath] of programs) {
    await copyFile(hostPath, join(root, guestPath))
    for (const library of await sharedLibraries(hostPath)) {
      const target = join(root, library.guestPath)
      await mkdir(dirname(target), { recursive: true })
      if (!existsSync(target)) await copyFile(await realpath(library.hostPath), target)
    }
  }
  await symlink('../sftp-server', join(root, 'usr/lib/openssh/sftp-server'))
}
