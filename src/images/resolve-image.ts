import { access } from 'node:fs/promises'
import { ImageError } from '../errors.js'
import type { ImageFiles, ResolvedSpec } from '../spec/vm-spec.js'
import type { BootableImage } from './bootable-image.js'
import { debianImage } from './debian-image.js'
import { tinyImage } from './tiny-image.js'

export const imageNames = ['tiny', 'debian'] as const

const prebuilt = new Map<string, BootableImage>()

/** Images a parent process already built (vitest's globalSetup hands them to workers), used instead of checking the cache again. */
export function registerPrebuiltImage(name: string, image: BootableImage): void {
  prebuilt.set(name, image)
}

/** Turns a spec's image (a name or the user's files) into files a backend can boot, building if needed. */
export async function resolveImage(spec: ResolvedSpec, options: { signal?: AbortSignal; onProgress?: (line: string) => void } = {}): Promise<BootableImage> {
  const image = spec.image
  if (typeof image === 'string' || !('disk' in image)) {
    const name = typeof image === 'string' ? image : image.name
    const packages = typeof image === 'string' ? [] : (image.packages ?? [])
    const ready = prebuilt.get(name)
    if (ready && packages.length === 0 && (name !== 'tiny' || spec.kernel === undefined)) return ready
    if (name === 'tiny' && packages.length > 0) throw new ImageError("takes no packages (it is busybox and dropbear only); use 'debian' to install packages", name)
    if (name === 'tiny') return tinyImage({ kernel: spec.kernel, ...options })
    if (name === 'debian') return debianImage({ packages, ...options })
    throw new ImageError(`unknown image; use one of ${imageNames.map((n) => `'${n}'`).join(', ')}, or give your own files { disk, kernel?, initrd? }`, name)
  }
  return userImage(image)
}

/** The user's own image: checked to exist, never written (each VM runs on an overlay). */
async function userImage(image: ImageFiles): Promise<BootableImage> {
  for (const [field, path] of Object.entries(image)) {
    if (path === undefined) continue
    try {
      await access(path)
    } catch {
      throw new ImageError(`${field} file ${path} does not exist or cannot be read`, image.disk)
    }
  }
  return {
    name: image.disk,
    disk: image.disk,
    kernel: image.kernel,
    initrd: image.initrd,
    kernelArgs: ['console=ttyS0', 'root=/dev/vda', 'rw'],
    sshUser: 'root',
  }
}
