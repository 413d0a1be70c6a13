import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { markIoUringRefused, refusedIoUring } from './disk-io.js'
import { domainXml } from './domain-xml.js'
import type { LibvirtVm } from './libvirt-vm.js'

/**
 * `virsh create` of a VM's domain from its definition. Where the host refuses io_uring, the
 * domain is created again with QEMU's thread pool, and the host's later domains go without it.
 */
export async function createDomain(record: Pick<LibvirtVm, 'connection' | 'dir' | 'definition'>): Promise<void> {
  try {
    await createFromDefinition(record)
  } catch (error) {
    if (!record.definition.diskIo || !refusedIoUring(error)) throw error
    markIoUringRefused(record.connection.uri)
    record.definition = { ...record.definition, diskIo: undefined }
    await createFromDefinition(record)
  }
}

async function createFromDefinition(record: Pick<LibvirtVm, 'connection' | 'dir' | 'definition'>): Promise<void> {
  const file = join(record.dir, 'domain.xml')
  await writeFile(file, domainXml(record.definition), { mode: 0o600 })
  await record.connection.run(['create', file])
}
