import { PromiseCache } from '../../common/promise-cache.js'
import { locateRequired } from '../../host/requirements.js'
import { diskIoVerdict, type DiskIoMode } from './disk-io.js'

/** The host programs a QEMU VM needs, and how its disks do I/O on this host. */
export interface QemuHostTools {
  qemu: string
  qemuImg: string
  setpriv: string
  diskIo: DiskIoMode
}

/**
 * Finds the tools once (a failed look-up is tried again on the next call). The seed tool is
 * checked here too, so that a host without one fails before any file is made.
 */
export function hostToolsLookup(diskIo: DiskIoMode | 'auto' = 'auto'): () => Promise<QemuHostTools> {
  const found = new PromiseCache<'host', QemuHostTools>()
  return () =>
    found.get('host', async () => {
      await locateRequired('seed-iso-tool')
      const qemu = await locateRequired('qemu-system')
      const mode = diskIo === 'auto' ? (await diskIoVerdict(qemu)).mode : diskIo
      return { qemu, qemuImg: await locateRequired('qemu-img'), setpriv: await locateRequired('setpriv'), diskIo: mode }
    })
}
