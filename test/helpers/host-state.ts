import { readdir, readFile } from 'node:fs/promises'

/** Pids of running QEMU processes whose command line mentions `fragment`. */
export async function qemuProcessesMentioning(fragment: string): Promise<number[]> {
  return (await qemuCommandLinesMentioning(fragment)).map(({ pid }) => pid)
}

/** Running QEMU processes whose command line mentions `fragment`, with their arguments. */
export async function qemuCommandLinesMentioning(fragment: string): Promise<{ pid: number; argv: string[] }[]> {
  const found: { pid: number; argv: string[] }[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes('qemu-system') && cmdline.includes(fragment)) found.push({ pid: Number(entry), argv: cmdline.split('\0') })
  }
  return found
}

/** Whether a process still runs: a zombie (dead, waiting for its parent to reap it) does not. */
export async function processRunning(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}

/** Pids of running vde_switch processes whose command line mentions `fragment`. */
export async function vdeSwitchesMentioning(fragment: string): Promise<number[]> {
  const found: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes('vde_switch') && cmdline.includes(fragment) && (await processRunning(Number(entry)))) found.push(Number(entry))
  }
  return found
}
