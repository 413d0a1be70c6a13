import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { packageRoot } from './package-root.js'

let version: string | undefined

/** This package's version, recorded in each golden entry's description (the key itself hashes the harness code: see harnessCodeDigest). */
export function harnessVersion(): string {
  version ??= (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version
  return version
}
