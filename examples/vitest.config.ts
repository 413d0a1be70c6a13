import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['examples/**/*.test.ts'],
    globalSetup: ['test/integration/global-setup.ts'],
    reporters: ['verbose'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
  },
})
