import { fileURLToPath } from 'node:url'

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))

/** Inside this repository, suites import the package by name (as a user's would), resolved to its sources. */
export const packageAliases = [
  { find: /^vmharness\/vitest\/global-setup$/, replacement: here('../fixtures/global-setup.ts') },
  { find: /^vmharness\/vitest\/reporter$/, replacement: here('../fixtures/failure-files-reporter.ts') },
  { find: /^vmharness\/vitest$/, replacement: here('../fixtures/index.ts') },
  { find: /^vmharness$/, replacement: here('../src/index.ts') },
]
