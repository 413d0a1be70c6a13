import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { debianReadyCommand } from '../../src/images/debian-image.js'
import { readyCommandFailure } from '../../src/machine/boot-wait.js'

// cloud-init 22.4's `status --long` after a failed module (the shape Debian 12's guest prints).
const longStatus = `status: error
time: Wed, 02 Dec 2026 03:00:00 +0000
detail:
DataSourceNoCloud [seed=/dev/sr0][dsmode=net]
errors:
	('ssh', KeyError('ed25519_private'))
`

let bin: string

beforeAll(async () => {
  bin = await mkdtemp(join(tmpdir(), 'vmharness-ready-'))
  // Stand-ins for the guest's cloud-init, systemctl and journalctl; what they report comes from the environment.
  await writeFile(join(bin, 'cloud-init'), `#!/bin/sh\ncase "$*" in\n  'status --wait') echo 'status: whatever'; exit "$WAIT_EXIT" ;;\n  'status --long') printf '%s' "$LONG_STATUS"; exit 1 ;;\nesac\nexit 99\n`)
  await writeFile(
    join(bin, 'systemctl'),
    `#!/bin/sh\ncase "$*" in\n  'is-failed --quiet vmharness-seed-network.service') [ "$SEED_UNIT" = failed ] ;;\n  *) echo degraded; exit 1 ;;\nesac\n`,
  )
  await writeFile(join(bin, 'journalctl'), `#!/bin/sh\n[ "$*" = '--unit vmharness-seed-network.service --boot --output cat --no-pager' ] || exit 99\nseq 1 30 | sed 's/^/line /'\necho 'mount: /run/vmharness/seed: wrong fs type.'\n`)
  for (const tool of ['cloud-init', 'systemctl', 'journalctl']) await chmod(join(bin, tool), 0o755)
})

afterAll(async () => {
  await rm(bin, { recursive: true, force: true })
})

/** The Debian image's ready command, run by a real sh, the way the guest's shell runs it over SSH. */
function runReady(waitExit: number, seedUnit: 'active' | 'failed' = 'active') {
  return execa('sh', ['-c', debianReadyCommand], { reject: false, env: { PATH: `${bin}:/usr/bin:/bin`, WAIT_EXIT: String(waitExit), LONG_STATUS: longStatus, SEED_UNIT: seedUnit } })
}

describe("the Debian image's ready command", () => {
  it("fails when cloud-init reports an error, printing cloud-init's long status", async () => {
    const result = await runReady(1)
    expect(result.exitCode).toBe(1)
    expect(result.stdout).toBe(`cloud-init reported an error (cloud-init status --wait exited 1):\n${longStatus.trimEnd()}`)
  })

  it('succeeds, silently, when cloud-init is done (0) or done with recoverable errors (2), whatever systemd says', async () => {
    for (const waitExit of [0, 2]) {
      const result = await runReady(waitExit)
      expect(result.exitCode).toBe(0)
      expect(result.stdout).toBe('')
    }
  })

  it("fails when the seed's network configuration failed, printing the end of its log", async () => {
    const result = await runReady(0, 'failed')
    expect(result.exitCode).toBe(1)
    const lines = result.stdout.split('\n')
    expect(lines[0]).toBe("the seed's static addresses and /etc/hosts were not applied (vmharness-seed-network.service failed):")
    expect(lines.slice(1)).toHaveLength(20)
    expect(lines.at(-1)).toBe('mount: /run/vmharness/seed: wrong fs type.')
  })
})

describe('readyCommandFailure', () => {
  const result = { command: 'ready', stdout: '', stderr: '', exitCode: 0, signal: null }

  it('is nothing when the command exits 0', () => {
    expect(readyCommandFailure(result)).toBeUndefined()
  })

  it("is the command's output and how it ended otherwise", () => {
    expect(readyCommandFailure({ ...result, exitCode: 1, stdout: 'cloud-init reported an error:\nstatus: error\n' })).toBe('cloud-init reported an error:\nstatus: error\n(the ready command ended with exit code 1)')
    expect(readyCommandFailure({ ...result, exitCode: null, signal: 'KILL' })).toBe('the ready command ended with signal KILL and printed nothing')
  })
})
