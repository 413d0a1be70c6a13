import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SpecError } from '../../src/errors.js'
import { tinyImage } from '../../src/images/tiny-image.js'
import { Vm } from '../../src/machine/vm.js'
import { buildBootableDisk, missingDiskTools } from '../helpers/bootable-disk.js'
import { skipBecause } from '../helpers/skip.js'

// A directory name a shell would mangle, and commas that QEMU options would split on. Its quotes
// pair up, so a shell given it bare or in double quotes would parse it and run both commands: the
// marker would appear in that shell's working directory, or (after `cd`) in its home directory.
const marker = `vmharness-pwned-${process.pid}-${Date.now()}`
const hostileName = `$(touch ${marker}) \`cd;touch ${marker}\` it's a "disk", isn't it`

/** The markers a host shell started by this process would have left (nothing here spawns with another cwd). */
function hostMarkers(): string[] {
  return [join(process.cwd(), marker), join(homedir(), marker)].filter((path) => existsSync(path))
}

let scratch: string
let hostile: string

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'vmharness-byo-'))
  hostile = join(scratch, hostileName)
  await mkdir(hostile)
})

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true })
  for (const path of hostMarkers()) await rm(path, { force: true })
})

async function fingerprint(path: string): Promise<string> {
  const info = await stat(path)
  return `${createHash('sha256').update(await readFile(path)).digest('hex')} ${info.mtimeMs}`
}

describe('bring your own image', () => {
  it('boots { kernel, initrd, disk } from a path full of shell and QEMU syntax, never writing the disk', async () => {
    const tiny = await tinyImage()
    const image = { kernel: join(hostile, 'vmlinuz'), initrd: join(hostile, 'initrd.img'), disk: join(hostile, 'disk, v1.qcow2') }
    await copyFile(tiny.kernel ?? '', image.kernel)
    await copyFile(tiny.initrd ?? '', image.initrd)
    await copyFile(tiny.disk, image.disk)
    const before = await fingerprint(image.disk)
    const vm = await Vm.start({ image, name: hostileName })
    try {
      await vm.succeed('echo written > /root/file && sync')
      expect(await vm.succeed('cat /root/file')).toBe('written\n')
      // The name also reaches the guest (its hostname, through the seed): nothing there ran it either.
      expect(await vm.succeed(`ls -d /${marker} /root/${marker} 2>/dev/null; true`)).toBe('')
    } finally {
      await vm.destroy()
    }
    expect(await fingerprint(image.disk)).toBe(before)
    expect(hostMarkers()).toEqual([])
  })

  it('boots a disk with its own bootloader through the firmware, cloud-image style, never writing it', async (context) => {
    const missing = await missingDiskTools()
    if (missing) skipBecause(context, missing)
    const disk = join(hostile, 'cloud.qcow2')
    await buildBootableDisk(await mkdtemp(join(scratch, 'build-')), disk)
    const before = await fingerprint(disk)
    const vm = await Vm.start({ image: { disk }, name: 'cloud' })
    try {
      expect(vm.handle.spec.machine).toBe('pc')
      // The kernel line is the one in the disk's syslinux.cfg: the disk's own bootloader ran.
      expect(await vm.succeed('cat /proc/cmdline')).toContain('root=/dev/vda2')
      expect(await vm.succeed('hostname')).toBe('cloud\n')
      await vm.succeed('echo written > /root/file && sync')
    } finally {
      await vm.destroy()
    }
    expect(await fingerprint(disk)).toBe(before)
  })

  it("refuses a disk without a kernel on 'microvm', which has no firmware to boot it, before anything starts", async () => {
    await expect(Vm.start({ image: { disk: '/nonexistent.qcow2' }, machine: 'microvm' })).rejects.toThrow(SpecError)
    await expect(Vm.start({ image: { disk: '/nonexistent.qcow2' }, machine: 'microvm' })).rejects.toThrow(/^machine: 'microvm' boots only a kernel/)
  })
})
