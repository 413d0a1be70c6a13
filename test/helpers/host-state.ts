import { readdir, readFile } from 'node:fs/promises'

/** Pids of running QEMU processes whose command line mentions `fragment`. */
export async function qemuProcessesMentioning(fragment: string): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes('qemu-system') && cmdline.includes(fragment)) pids.push(Number(entry))
  }
  return pids
}

/** Whether a process still runs: a zombie (dead, waiting for its parent to reap it) does not. */
export async function processRunning(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}
