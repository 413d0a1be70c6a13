import { execa } from 'execa'
import { escapeOptionValue } from './qemu-argv.js'

/** How QEMU submits a VM disk's reads and writes to the host. */
export type DiskIoMode = 'io_uring' | 'threads'

export interface DiskIoVerdict {
  mode: DiskIoMode
  reason: string
}

const probeTimeoutMs = 10_000
const verdicts = new Map<string, Promise<DiskIoVerdict>>()

/**
 * io_uring, where this QEMU and this host allow it. Loading an internal snapshot reads the saved
 * RAM from the disk image in 32 KiB pieces, and with the thread pool each piece is a round trip
 * between threads: measured here, a load took 40 ms with io_uring against 100–250 ms. But QEMU
 * may be built without io_uring, and container seccomp profiles often forbid it, so one short
 * QEMU run per process (~35 ms) proves it before any VM uses it.
 */
export function diskIoVerdict(qemu: string): Promise<DiskIoVerdict> {
  let verdict = verdicts.get(qemu)
  if (!verdict) {
    verdict = probeIoUring(qemu)
    verdicts.set(qemu, verdict)
  }
  return verdict
}

async function probeIoUring(qemu: string): Promise<DiskIoVerdict> {
  // Any regular file serves as the disk; QEMU's own binary is one that is surely there.
  const result = await execa(
    qemu,
    ['-nodefaults', '-no-user-config', '-display', 'none', '-machine', 'none', '-blockdev', `driver=file,filename=${escapeOptionValue(qemu)},node-name=probe,read-only=on,aio=io_uring`, '-qmp', 'stdio'],
    { input: '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n', reject: false, timeout: probeTimeoutMs, all: true },
  )
  if (result.exitCode === 0) return { mode: 'io_uring', reason: 'QEMU opened a disk with aio=io_uring' }
  const firstLine = (result.stderr || result.all || '').split('\n').find((line) => line.trim())?.trim()
  const why = result.timedOut ? `the probe did not finish in ${probeTimeoutMs / 1000} s` : (firstLine ?? `exit code ${result.exitCode}`)
  return { mode: 'threads', reason: `io_uring is not usable (${why}); disks use QEMU's thread pool, and snapshot loads are slower` }
}
