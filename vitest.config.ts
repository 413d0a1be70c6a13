import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // The JSON report is what .ci/run counts passed and failed tests from.
    reporters: ['default', ['json', { outputFile: '.vitest-report.json' }]],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // The same globalSetup users get: checks the host, builds the tiny image once for all workers, sweeps at the end.
          globalSetup: ['fixtures/global-setup.ts'],
          // Booting under TCG on a busy 2-core runner can take tens of seconds.
          testTimeout: 180_000,
          hookTimeout: 240_000,
        },
      },
    ],
  },
})
