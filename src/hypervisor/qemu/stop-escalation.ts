import { setTimeout as sleep } from 'node:timers/promises'
import type { QemuProcess } from './qemu-process.js'
import type { QemuVm } from './qemu-vm.js'

const forcedStopGraceMs = 2_000

/** Graceful, then forced: ACPI power-off (when given time), SIGTERM, SIGKILL. */
export async function stopProcess(record: QemuVm, timeoutMs: number): Promise<void> {
  const process = record.process
  if (!process || process.exitInfo) return
  process.markRequested()
  if (record.qmp && !record.qmp.closed && timeoutMs > 0) {
    await record.qmp.execute('system_powerdown', undefined, 5_000).catch(() => undefined)
    if (await exitsWithin(process, timeoutMs)) return
  }
  process.kill('SIGTERM')
  if (await exitsWithin(process, forcedStopGraceMs)) return
  process.kill('SIGKILL')
  await process.exited
}

async function exitsWithin(process: QemuProcess, ms: number): Promise<boolean> {
  const timer = new AbortController()
  try {
    return await Promise.race([process.exited.then(() => true), sleep(ms, false, { signal: timer.signal })])
  } finally {
    timer.abort()
  }
}
