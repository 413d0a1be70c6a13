import { defineConfig } from 'vitest/config'

// Suites that need no VM (and so no globalSetup), run in a vitest of their own by unit tests.
export default defineConfig({
  test: {
    include: [process.env.SUITE_FILES ?? 'test/suites/skips.suite.ts'],
  },
})
