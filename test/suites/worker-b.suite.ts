import { expect } from 'vitest'
import { noteWorker, test } from './machine.js'

test('worker b gets its own clean machine', async ({ box }) => {
  expect(await box.succeed('cat /root/state')).toBe('golden\n')
  await box.succeed('echo b > /root/state')
  await noteWorker('b', (await box.state()).pid)
})

test('worker b starts clean again', async ({ box }) => {
  expect(await box.succeed('cat /root/state')).toBe('golden\n')
})
