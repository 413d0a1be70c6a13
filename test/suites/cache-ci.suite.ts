import { expect } from 'vitest'
import { test } from './machine.js'

// Run by cache-ci.test.ts against a cache built, moved and damaged by that test.
test('starts from the golden state', async ({ box }) => {
  expect(await box.succeed('cat /root/state')).toBe('golden\n')
})
