import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { savedStateFiles } from './saved-state.js'

/** A restored guest prints nothing new at first: its log begins with what it printed before the save. */
export async function startConsoleLogFrom(snapshotDir: string, consoleLog: string): Promise<void> {
  const before = await readFile(join(snapshotDir, savedStateFiles.console)).catch(() => Buffer.alloc(0))
  await writeFile(consoleLog, Buffer.concat([before, Buffer.from(`\n[vmharness: restored from ${snapshotDir}]\n`)]), { mode: 0o600 })
}
