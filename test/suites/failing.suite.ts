import { expect } from 'vitest'
import { test } from './machine.js'

test('fails on purpose after running commands', async ({ box }) => {
  await box.succeed('echo marker-before-failure')
  await box.succeed('echo "left by the failing test" > /tmp/evidence')
  await box.exec('exit 3')
  expect(await box.succeed('cat /root/state')).toBe('not what is there\n')
})
