import { readFileSync } from 'node:fs'

let khz: number | undefined

/** The host CPU clock in kHz from /proc/cpuinfo (what a TCG guest's TSC runs at), 2 GHz when unknown. */
export function hostTscKhz(): number {
  if (khz === undefined) {
    let text = ''
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8')
    } catch {
      // not Linux, or no /proc: fall back below
    }
    const mhz = Number(/cpu MHz\s*:\s*([\d.]+)/.exec(text)?.[1] ?? '2000')
    khz = Math.round(mhz * 1000)
  }
  return khz
}
