import { createHash } from 'node:crypto'
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect } from 'vitest'
import { UnitFailedError } from '../../src/errors.js'
import { vmTest } from '../../fixtures/vm-test.js'
import { clockErrorMs, randomOutput, readGuestClock } from '../helpers/guest-freshness.js'

const webUnit = `[Unit]
Description=static web server for the vmharness tests
[Service]
ExecStart=/usr/bin/python3 -m http.server 8080 --bind 127.0.0.1 --directory /srv/www
[Install]
WantedBy=multi-user.target
`

const test = vmTest({
  machines: {
    server: {
      image: 'debian',
      // Every test gets a clone of the golden snapshot, whatever pool size the host's default gives
      // (without a pool, internal reloads hand the golden builder itself to the next test): the
      // cloud-init test checks a clone.
      snapshotKind: 'external',
      setup: async (vm) => {
        await vm.succeed(`mkdir -p /srv/www && echo "served by systemd" > /srv/www/index.html`)
        await vm.succeed(`cat > /etc/systemd/system/web.service`, { stdin: webUnit })
        await vm.succeed('systemctl daemon-reload && systemctl enable --now web.service')
        await vm.waitForUnit('web.service')
      },
    },
  },
})

const scratch = await mkdtemp(join(tmpdir(), 'vmharness-copy-'))
afterAll(() => rm(scratch, { recursive: true, force: true }))

// The Debian image is built (about a minute) and booted (about a minute under TCG) once per cache key.
describe.sequential('a Debian guest', { timeout: 600_000 }, () => {
  test('runs the systemd service its setup installed, reachable from the host through forwardPort', async ({ server }) => {
    await server.waitForUnit('web.service', { timeoutMs: 30_000 })
    await server.waitForOpenPort(8080, { timeoutMs: 30_000 })
    const port = await server.forwardPort(8080)
    const response = await fetch(`http://127.0.0.1:${port}/index.html`)
    expect(response.status).toBe(200)
    expect(await response.text()).toBe('served by systemd\n')
  })

  test('went through cloud-init exactly once: the clone resumed, it did not boot a second time', async ({ server }) => {
    expect(server.handle.restoredFrom).toBeTruthy()
    expect((await server.succeed('cloud-init status')).trim()).toBe('status: done')
    expect((await server.succeed('ls /var/lib/cloud/instances')).trim().split('\n')).toHaveLength(1)
    expect((await server.succeed(`grep -c "running 'init-local'" /var/log/cloud-init.log`)).trim()).toBe('1')
    expect((await server.succeed('journalctl --list-boots --no-pager | tail -n +2 | wc -l')).trim()).toBe('1')
    // The hostname and the pinned host key came from the seed, not from the image or a regeneration.
    expect(await server.succeed('hostname')).toBe('server\n')
    expect(await server.succeed('cat /etc/ssh/ssh_host_ed25519_key.pub')).toContain(server.handle.ssh?.hostKey.split(' ')[1])
  })

  test('copies a directory tree in and out, contents and modes equal', async ({ server }) => {
    const source = join(scratch, 'tree')
    await mkdir(join(source, 'bin'), { recursive: true })
    await writeFile(join(source, 'bin', 'tool'), '#!/bin/sh\necho tool ran\n')
    await chmod(join(source, 'bin', 'tool'), 0o750)
    await writeFile(join(source, 'secret'), 'only for root\n', { mode: 0o600 })
    await writeFile(join(source, 'big'), Buffer.alloc(3 * 1024 * 1024, 7))
    await symlink('bin/tool', join(source, 'link'))
    await server.copyTo(source, '/opt/tree')
    expect(await server.succeed('/opt/tree/link')).toBe('tool ran\n')
    expect(await server.succeed('stat -c "%a %n" /opt/tree/bin/tool /opt/tree/secret')).toBe('750 /opt/tree/bin/tool\n600 /opt/tree/secret\n')
    const back = join(scratch, 'back')
    await server.copyFrom('/opt/tree', back)
    expect(await describeTree(back)).toEqual(await describeTree(source))
  })

  const randomSeen: string[] = []
  for (const round of [1, 2, 3]) {
    test(`clean Debian VM ${round} of 3: random output of its own, and the clock within 0.1 s`, async ({ server }) => {
      randomSeen.push(await randomOutput(server))
      const reading = await readGuestClock(server, 'date')
      expect(Math.abs(clockErrorMs(reading)), `off by ${clockErrorMs(reading).toFixed(1)} ms`).toBeLessThan(100)
      expect(new Set(randomSeen).size).toBe(randomSeen.length)
    })
  }

  test('a unit that fails ends waitForUnit at once with its systemctl status', async ({ server }) => {
    await server.succeed('cat > /etc/systemd/system/broken.service && systemctl daemon-reload', { stdin: '[Service]\nExecStart=/bin/sh -c "echo about to fail; exit 3"\n' })
    await server.exec('systemctl start broken.service')
    const started = Date.now()
    const error = await server.waitForUnit('broken.service', { timeoutMs: 60_000 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UnitFailedError)
    expect(Date.now() - started).toBeLessThan(30_000)
    expect((error as UnitFailedError).status).toMatch(/Active: failed/)
    expect((error as UnitFailedError).message).toContain('status=3')
  })
})

/** Every entry under `root`: relative path, permission bits, symlink target, contents' hash. */
async function describeTree(root: string): Promise<string[]> {
  const lines: string[] = []
  for (const entry of (await readdir(root, { recursive: true })).sort()) {
    const path = join(root, entry)
    const info = await lstat(path)
    if (info.isSymbolicLink()) lines.push(`${entry} -> ${await readlink(path)}`)
    else if (info.isDirectory()) lines.push(`${entry}/ ${(info.mode & 0o7777).toString(8)}`)
    else lines.push(`${entry} ${(info.mode & 0o7777).toString(8)} ${createHash('sha256').update(await readFile(path)).digest('hex')}`)
  }
  return lines
}
