import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { suiteCacheKey, type MachineDeclarations } from '../machine/suite-cache-key.js'

const usage = `usage: vmharness cache key [--config VITEST_CONFIG] [--explain] MODULE...
  MODULE: a module (.js, or .ts through vitest's module runner) that exports the options the suite
          gives vmTest, { machines, networks? } (not the vmTest(...) result: that needs a running vitest)
`

/** `vmharness cache key`: a key for a CI cache step, from the machines a suite declares (see suiteCacheKey). */
export async function cacheCommand(args: string[], write: (text: string) => void): Promise<number> {
  const [action, ...rest] = args
  if (action !== 'key') return (write(usage), 2)
  let config: string | undefined
  let explain = false
  const modules: string[] = []
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string
    if (arg === '--config' && rest[i + 1]) config = rest[++i]
    else if (arg === '--explain') explain = true
    else if (!arg.startsWith('-')) modules.push(arg)
    else return (write(usage), 2)
  }
  if (modules.length === 0) return (write(usage), 2)
  const declarations: MachineDeclarations[] = []
  const load = await moduleLoader(modules, config)
  try {
    for (const module of modules) {
      const found = declarationsIn(await load.import(module))
      if (found.length === 0) {
        write(`vmharness cache key: ${module} exports no { machines } (export the options you give vmTest, and pass them to vmTest in the tests)\n`)
        return 1
      }
      declarations.push(...found)
    }
  } finally {
    await load.close()
  }
  const { key, machines } = await suiteCacheKey(declarations)
  if (explain) for (const line of machines) write(`# ${line}\n`)
  write(`${key}\n`)
  return 0
}

/** Every export that is a suite's vmTest options: an object with `machines`. */
export function declarationsIn(module: Record<string, unknown>): MachineDeclarations[] {
  return Object.values(module).filter(
    (value): value is MachineDeclarations => typeof value === 'object' && value !== null && typeof (value as MachineDeclarations).machines === 'object' && (value as MachineDeclarations).machines !== null,
  )
}

interface ModuleLoader {
  import(path: string): Promise<Record<string, unknown>>
  close(): Promise<void>
}

/** Plain JavaScript is imported by Node; TypeScript goes through vitest's module runner (with the suite's config: its aliases). */
async function moduleLoader(modules: string[], config: string | undefined): Promise<ModuleLoader> {
  if (config === undefined && modules.every((module) => /\.(m?js|cjs)$/.test(module))) {
    return { import: (path) => import(pathToFileURL(resolve(path)).href) as Promise<Record<string, unknown>>, close: async () => undefined }
  }
  const { createVitest } = await import('vitest/node')
  const vitest = await createVitest('test', { config, watch: false, run: true }, {}, {})
  return { import: (path) => vitest.import<Record<string, unknown>>(resolve(path)), close: () => vitest.close() }
}
