import { copyFile, open, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { checkRequirements, installScript, missingPackages } from '../../src/host/requirements.js'
import { tinyImage } from '../../src/images/tiny-image.js'

const sector = 512
const bootStart = 2048
const bootMiB = 48
const mbrCode = '/usr/lib/syslinux/mbr/mbr.bin'

/**
 * Why this helper cannot run here, or undefined: the host tools it needs are the requirements of
 * group 'test', which scripts/install-host-packages installs in a checkout.
 */
export async function missingDiskTools(): Promise<string | undefined> {
  const missing = (await checkRequirements(['test'])).filter((check) => !check.path)
  if (missing.length === 0) return undefined
  const packages = missingPackages(missing)
  return `building a bootable disk needs ${missing.map((check) => check.requirement.what).join(', ')}: Debian packages ${packages.join(' ')} (run ${installScript}, or vmharness doctor --install --tests)`
}

/**
 * A disk that boots by itself, the way a cloud image does: an MBR, a FAT partition with syslinux,
 * the tiny guest's kernel and initrd, and its root filesystem in a second partition. The guest
 * reads its keys from the NoCloud seed like any cloud image.
 */
export async function buildBootableDisk(workDir: string, output: string): Promise<void> {
  const tiny = await tinyImage()
  const rootRaw = join(workDir, 'root.raw')
  await execa('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', tiny.disk, rootRaw])
  const rootSectors = (await stat(rootRaw)).size / sector
  const bootSectors = (bootMiB * 1024 * 1024) / sector
  const rootStart = bootStart + bootSectors
  const disk = join(workDir, 'disk.img')
  await writeFile(disk, masterBootRecord(await readFile(mbrCode), [
    { bootable: true, type: 0x06, start: bootStart, sectors: bootSectors },
    { bootable: false, type: 0x83, start: rootStart, sectors: rootSectors },
  ]))
  await execa('truncate', ['-s', String((rootStart + rootSectors) * sector), disk])
  await execa('mkfs.fat', ['-F', '16', '-n', 'BOOT', `--offset=${bootStart}`, disk, String(bootMiB * 1024)])
  await execa('syslinux', ['--offset', String(bootStart * sector), '--install', disk])
  const args = tiny.kernelArgs.map((arg) => (arg === 'root=/dev/vda' ? 'root=/dev/vda2' : arg)).join(' ')
  await writeFile(join(workDir, 'syslinux.cfg'), `PROMPT 0\nTIMEOUT 0\nDEFAULT guest\nLABEL guest\n  KERNEL vmlinuz\n  INITRD initrd.img\n  APPEND ${args}\n`)
  await copyFile(tiny.kernel ?? '', join(workDir, 'vmlinuz'))
  await copyFile(tiny.initrd ?? '', join(workDir, 'initrd.img'))
  const partition = `${disk}@@${bootStart * sector}`
  await execa('mcopy', ['-i', partition, join(workDir, 'vmlinuz'), join(workDir, 'initrd.img'), join(workDir, 'syslinux.cfg'), '::/'], { env: { MTOOLS_SKIP_CHECK: '1' } })
  await copyInto(rootRaw, disk, rootStart * sector)
  await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', disk, output])
}

interface PartitionEntry {
  bootable: boolean
  type: number
  start: number
  sectors: number
}

function masterBootRecord(code: Buffer, partitions: PartitionEntry[]): Buffer {
  const mbr = Buffer.alloc(sector)
  code.copy(mbr, 0, 0, 440)
  partitions.forEach((partition, index) => {
    const at = 446 + index * 16
    mbr[at] = partition.bootable ? 0x80 : 0
    mbr.set([0xfe, 0xff, 0xff], at + 1)
    mbr[at + 4] = partition.type
    mbr.set([0xfe, 0xff, 0xff], at + 5)
    mbr.writeUInt32LE(partition.start, at + 8)
    mbr.writeUInt32LE(partition.sectors, at + 12)
  })
  mbr.writeUInt16LE(0xaa55, 510)
  return mbr
}

async function copyInto(source: string, target: string, offset: number): Promise<void> {
  const input = await open(source, 'r')
  const output = await open(target, 'r+')
  try {
    const buffer = Buffer.alloc(4 * 1024 * 1024)
    for (let position = 0; ; ) {
      const { bytesRead } = await input.read(buffer, 0, buffer.length, position)
      if (bytesRead === 0) break
      await output.write(buffer, 0, bytesRead, offset + position)
      position += bytesRead
    }
  } finally {
    await input.close()
    await output.close()
  }
}
