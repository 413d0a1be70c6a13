import { join } from 'node:path'
import { createOverlay, removeOverlaysExcept } from './disk-overlays.js'
import type { QemuVm } from './qemu-vm.js'
import { startConsoleLogFrom } from './restored-console-log.js'
import { savedStateFiles, type SavedState } from './saved-state.js'

/**
 * Points the VM at a saved state (a clone, or an external restore): a fresh overlay over its
 * frozen disk, its seed and console log, and its RAM for the next launch to load instead of booting.
 */
export async function loadOnNextLaunch(record: QemuVm, saved: SavedState, qemuImg: string): Promise<void> {
  const overlay = join(record.dir, `disk-${++record.lastFileNumber}.qcow2`)
  await createOverlay(qemuImg, join(saved.dir, savedStateFiles.disk), overlay)
  await removeOverlaysExcept(record.dir, overlay)
  record.launch.disk = overlay
  record.launch.seedIso = saved.meta.hasSeed ? join(saved.dir, savedStateFiles.seed) : undefined
  record.diskNode = 'disk0'
  record.diskBacking = join(saved.dir, savedStateFiles.disk)
  record.incomingState = join(saved.dir, savedStateFiles.state)
  await startConsoleLogFrom(saved.dir, record.launch.consoleLog)
}
