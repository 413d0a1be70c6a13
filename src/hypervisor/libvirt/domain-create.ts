import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { markRefused, refusedExtra } from './domain-extras.js'
import { domainXml, type DomainXmlOptions } from './domain-xml.js'
import type { LibvirtVm } from './libvirt-vm.js'

/**
 * `virsh create` of a VM's domain from its definition. Where the host refuses one of the
 * domain's extras (domain-extras.ts), the domain is created again without it, and the host's
 * later domains go without it too.
 */
export async function createDomain(record: Pick<LibvirtVm, 'connection' | 'dir' | 'definition'>, options: DomainXmlOptions = {}): Promise<void> {
  for (;;) {
    try {
      await createFromDefinition(record, options)
      return
    } catch (error) {
      const extra = refusedExtra(record.definition, error)
      if (!extra) throw error
      markRefused(record.connection.uri, extra)
      record.definition = { ...record.definition, [extra]: undefined }
    }
  }
}

async function createFromDefinition(record: Pick<LibvirtVm, 'connection' | 'dir' | 'definition'>, options: DomainXmlOptions): Promise<void> {
  const file = join(record.dir, 'domain.xml')
  await writeFile(file, domainXml(record.definition, options), { mode: 0o600 })
  await record.connection.run(['create', file])
}
