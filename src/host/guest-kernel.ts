import { readdir } from 'node:fs/promises'
import { join } from 'node:path'

/** The newest Debian cloud kernel in /boot, or $VMHARNESS_KERNEL. Its modules must sit in /lib/modules/<release>. */
export async function findGuestKernel(env: NodeJS.ProcessEnv = process.env, bootDir = '/boot'): Promise<string | undefined> {
  if (env.VMHARNESS_KERNEL) return env.VMHARNESS_KERNEL
  const names = (await readdir(bootDir).catch(() => [] as string[]))
    .filter((name) => /^vmlinuz-.+-cloud-amd64$/.test(name))
    .sort(compareVersions)
  const newest = names.at(-1)
  return newest ? join(bootDir, newest) : undefined
}

/** `/boot/vmlinuz-6.1.0-56-cloud-amd64` → `6.1.0-56-cloud-amd64` */
export function kernelRelease(kernelPath: string): string {
  return kernelPath.replace(/^.*\/vmlinuz-/, '')
}

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true })
}
