import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// Suites that the integration tests run in a vitest of their own, to see what a user's run would show.
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))

export default defineConfig({
  resolve: {
    alias: [
      { find: /^vmharness\/vitest\/global-setup$/, replacement: here('../../fixtures/global-setup.ts') },
      { find: /^vmharness\/vitest$/, replacement: here('../../fixtures/index.ts') },
    ],
  },
  test: {
    include: [process.env.SUITE_FILES ?? 'test/suites/*.suite.ts'],
    globalSetup: ['vmharness/vitest/global-setup'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
  },
})
