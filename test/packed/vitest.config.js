import { defineConfig } from 'vitest/config'

// The user's config, as the README gives it.
export default defineConfig({
  test: {
    globalSetup: ['vmharness/vitest/global-setup'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
  },
})
