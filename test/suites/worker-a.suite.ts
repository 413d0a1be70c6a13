import { expect } from 'vitest'
import { noteWorker, test } from './machine.js'

test('worker a gets its own clean machine', async ({ box }) => {
  expect(await box.succeed('cat /root/state')).toBe('golden\n')
  await box.succeed('echo a > /root/state')
  await noteWorker('a', (await box.state()).pid)
})

test('worker a starts clean again', async ({ box }) => {
  expect(await box.succeed('cat /root/state')).toBe('golden\n')
})
