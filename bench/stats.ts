export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

export async function timeIt(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await work()
  return performance.now() - started
}

/** A whole number from `--name N` on the command line, else from the environment variable, else the default. */
export function countOption(flag: string, variable: string, fallback: number): number {
  const at = process.argv.indexOf(`--${flag}`)
  const raw = at >= 0 ? process.argv[at + 1] : process.env[variable]
  if (raw === undefined) return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${flag} (or ${variable}) must be a whole number >= 1, got ${JSON.stringify(raw)}`)
  return value
}

/** A string from `--name VALUE` on the command line, else from the environment variable, else the default. */
export function stringOption(flag: string, variable: string, fallback: string): string {
  const at = process.argv.indexOf(`--${flag}`)
  return (at >= 0 ? process.argv[at + 1] : process.env[variable]) ?? fallback
}
