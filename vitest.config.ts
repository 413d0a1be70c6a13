import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // The JSON report is what .ci/run counts passed and failed tests from.
    // scripts/test runs the libvirt project apart (inside scripts/libvirt-sandbox), into a report of its own.
    reporters: ['default', ['json', { outputFile: process.env.VMHARNESS_REPORT || '.vitest-report.json' }]],
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
      {
        test: {
          // The libvirt backend's tests: scripts/test runs them inside scripts/libvirt-sandbox (a
          // libvirtd and an sshd of their own, in namespaces); elsewhere they skip, saying so.
          name: 'libvirt',
          include: ['test/libvirt/**/*.test.ts'],
          // One file at a time: the files share one daemon, and one of them restarts it.
          fileParallelism: false,
          globalSetup: ['fixtures/global-setup.ts'],
          testTimeout: 240_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
})
