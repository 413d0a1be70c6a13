import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

// Inside this repository the examples import the package by name, as a user's suite would.
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url))

export default defineConfig({
  resolve: {
    alias: [
      { find: /^vmharness\/vitest\/global-setup$/, replacement: here('../fixtures/global-setup.ts') },
      { find: /^vmharness\/vitest$/, replacement: here('../fixtures/index.ts') },
      { find: /^vmharness$/, replacement: here('../src/index.ts') },
    ],
  },
  test: {
    include: ['examples/**/*.test.ts'],
    globalSetup: ['vmharness/vitest/global-setup'],
    reporters: ['verbose'],
    testTimeout: 180_000,
    hookTimeout: 240_000,
  },
})
