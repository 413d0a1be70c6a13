// A suite written the way a user writes one: boot a real VM, run commands in it, check what happened.
import { afterAll, beforeAll, expect, test } from 'vitest'
import { Vm } from '../src/index.js'

let vm: Vm

function say(line: string): void {
  process.stdout.write(`  [example] ${line}\n`)
}

beforeAll(async () => {
  const started = Date.now()
  vm = await Vm.start({ image: 'tiny', name: 'example' })
  say(`booted '${vm.name}' under ${vm.handle.accel.toUpperCase()} in ${((Date.now() - started) / 1000).toFixed(1)} s, SSH on ${vm.handle.ssh?.host}:${vm.handle.ssh?.port} (${vm.handle.backend})`)
})

afterAll(async () => {
  await vm?.destroy()
  say('destroyed the VM: its process, overlay, sockets and logs are gone')
})

test('the guest runs its own kernel', async () => {
  const kernel = (await vm.succeed('uname -sr')).trim()
  say(`uname -sr → ${kernel}`)
  expect(kernel).toMatch(/^Linux \d+\.\d+/)
})

test('a daemon started in the guest answers on its port', async () => {
  await vm.succeed('mkdir -p /srv/www && echo "hello from the guest" > /srv/www/index.html')
  await vm.succeed('httpd -p 8080 -h /srv/www')
  const page = await vm.succeed('wget -qO- http://127.0.0.1:8080/')
  say(`busybox httpd served: ${page.trim()}`)
  expect(page).toBe('hello from the guest\n')
})

test('failures come back as exit codes and stderr', async () => {
  const result = await vm.exec('ls /no/such/dir')
  say(`ls /no/such/dir → exit ${result.exitCode}, stderr: ${result.stderr.trim()}`)
  expect(result.exitCode).not.toBe(0)
  expect(result.stderr).toContain('No such file or directory')
})

test('files written in the guest stay on its disk overlay', async () => {
  await vm.succeed('echo persisted > /root/note && sync')
  expect(await vm.succeed('cat /root/note')).toBe('persisted\n')
  say('wrote /root/note on the overlay; the image base stays untouched')
})
