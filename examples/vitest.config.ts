import { defineConfig } from 'vitest/config'
import { packageAliases } from './package-aliases.js'

export default defineConfig({
  resolve: { alias: packageAliases },
  test: {
    include: ['examples/**/*.test.ts'],
    globalSetup: ['vmharness/vitest/global-setup'],
    reporters: ['verbose'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
  },
})
