import { defineConfig } from 'vitest/config'
import { packageAliases } from '../../examples/package-aliases.js'

// Suites that the integration tests run in a vitest of their own, to see what a user's run would show.
export default defineConfig({
  resolve: { alias: packageAliases },
  test: {
    include: [process.env.SUITE_FILES ?? 'test/suites/*.suite.ts'],
    globalSetup: ['vmharness/vitest/global-setup'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
  },
})
