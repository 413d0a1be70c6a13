import { expect, it } from 'vitest'
import { skipBecause } from '../helpers/skip.js'

// Run by test/unit/report-summary.test.ts through test/suites/plain.vitest.config.ts: no VMs.
it('passes', () => {
  expect(1).toBe(1)
})

it('skips itself with a reason', (context) => {
  skipBecause(context, 'needs a thing this host lacks: install it')
})

it.skip('is marked skip', () => {})

it('fails', () => {
  expect(1).toBe(2)
})
