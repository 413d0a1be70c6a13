import { readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'

/** A qcow2 overlay over a read-only base: the VM writes here, the base is never written. */
export async function createOverlay(qemuImg: string, base: string, overlay: string): Promise<void> {
  await execa(qemuImg, ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay], { stdin: 'ignore' })
}

/** The VM directory keeps only the overlay in use; older ones belonged to states that are gone. */
export async function removeOverlaysExcept(dir: string, keep: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    const path = join(dir, entry)
    if (/^disk-\d+\.qcow2$/.test(entry) && path !== keep) await rm(path, { force: true })
  }
}
