// Every test starts from the same clean machine: what one test changes, the next never sees.
import { describe, expect } from 'vitest'
import { vmTest } from 'vmharness/vitest'

const test = vmTest({
  machines: {
    web: {
      image: 'tiny',
      // Runs once; the state it leaves is saved as the golden snapshot and cached across runs.
      setup: async (vm) => {
        await vm.succeed('mkdir -p /srv/www && echo "hello from the golden state" > /srv/www/index.html')
      },
    },
  },
})

function say(line: string): void {
  process.stdout.write(`  [example] ${line}\n`)
}

describe.sequential('a machine rolled back between tests', () => {
  test('sees what setup left', async ({ web }) => {
    expect(await web.succeed('cat /srv/www/index.html')).toBe('hello from the golden state\n')
    say(`'${web.name}' started from its golden snapshot; setup's file is there`)
  })

  test('changes everything it can', async ({ web }) => {
    await web.succeed('echo scribbled > /srv/www/index.html && rm -rf /etc/motd && touch /tmp/left-behind')
    await web.succeed('sleep 1000 >/dev/null 2>&1 &')
    await web.succeed('sysctl -w net.ipv4.ip_forward=1')
    say('rewrote the page, left a file in /tmp, started a process, changed a sysctl')
  })

  test('starts clean anyway', async ({ web }) => {
    expect(await web.succeed('cat /srv/www/index.html')).toBe('hello from the golden state\n')
    await web.fail('test -e /tmp/left-behind')
    await web.fail('pgrep -f "sleep 1000"')
    expect((await web.succeed('sysctl -n net.ipv4.ip_forward')).trim()).toBe('0')
    // The guest clock, to the microsecond, must fall within the host's clock around the command.
    const before = Date.now()
    const [seconds, micros] = (await web.succeed(`adjtimex | sed -n 's/.*tv_sec: *//p; s/.*tv_usec: *//p'`)).trim().split('\n').map(Number)
    const after = Date.now()
    const guestMs = seconds * 1000 + micros / 1000
    const outsideMs = guestMs < before ? before - guestMs : guestMs > after ? guestMs - after : 0
    expect(outsideMs).toBeLessThan(100)
    say(`rolled back: page, /tmp, processes and sysctl are as setup left them; clock read in a ${after - before} ms command, ${outsideMs.toFixed(0)} ms outside it`)
  })
})
