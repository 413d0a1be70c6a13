/** How a guest command ended, with all it printed. */
export interface ExecResult {
  command: string
  stdout: string
  stderr: string
  exitCode: number | null
  signal: string | null
}
