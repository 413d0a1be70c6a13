import { describe, expect, it, vi } from 'vitest'
import { doctor } from '../../src/cli/doctor.js'
import { checkLibvirt, type VirshResult, type VirshRunner } from '../../src/cli/libvirt-check.js'
import { findBinary } from '../../src/host/find-binary.js'
import type { RequirementCheck } from '../../src/host/requirements.js'
import { skipBecause } from '../helpers/skip.js'

// doctor's other probes boot QEMU; here they answer at once, so that only the libvirt check decides.
vi.mock('../../src/host/accelerator.js', () => ({ acceleratorVerdict: async () => ({ accel: 'tcg', reason: 'mocked', probed: false }) }))
vi.mock('../../src/hypervisor/qemu/disk-io.js', () => ({ diskIoVerdict: async () => ({ mode: 'threads', reason: 'mocked' }) }))
vi.mock('../../src/host/requirements.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/host/requirements.js')>()
  return {
    ...original,
    checkRequirements: async (groups: Parameters<typeof original.checkRequirements>[0] = ['run']): Promise<RequirementCheck[]> =>
      original.requirements.filter((requirement) => groups.includes(requirement.group ?? 'run')).map((requirement) => ({ requirement, path: `/found/${requirement.id}` })),
  }
})

const missingSocket = 'qemu:///system?socket=/nonexistent/sock'

const versionOutput = ['Compiled against library: libvirt 9.0.0', 'Using library: libvirt 9.0.0', 'Using API: QEMU 9.0.0', 'Running hypervisor: QEMU 7.2.22', 'Running against daemon: 9.0.0', ''].join('\n')

function fakeRunner(answer: (uri: string) => Partial<VirshResult>): { run: VirshRunner; calls: { virsh: string; args: readonly string[]; timeoutMs: number }[] } {
  const calls: { virsh: string; args: readonly string[]; timeoutMs: number }[] = []
  const run: VirshRunner = async (virsh, args, timeoutMs) => {
    calls.push({ virsh, args, timeoutMs })
    return { exitCode: 0, stdout: '', stderr: '', timedOut: false, ...answer(args[2] as string) }
  }
  return { run, calls }
}

const found = { findVirsh: async () => '/usr/bin/virsh' }

describe('the libvirt check of vmharness doctor', () => {
  it("says a daemon whose socket does not exist does not answer, what to start, and that it is informational", async (context) => {
    if (!(await findBinary('virsh'))) skipBecause(context, 'virsh missing (Debian package libvirt-clients)')
    const check = await checkLibvirt({ PATH: process.env.PATH, VMHARNESS_LIBVIRT_URI: missingSocket })
    expect(check.ok).toBe(false)
    expect(check.required).toBe(false)
    expect(check.lines[0]).toBe(`libvirt: ${missingSocket} does not answer: Failed to connect socket to '/nonexistent/sock': No such file or directory`)
    const text = check.lines.join('\n')
    expect(text).toContain('`systemctl start libvirtd` where systemd runs, else `libvirtd -d` as root')
    expect(text).toContain('network namespace of its own: scripts/libvirt-sandbox does that')
    expect(text).toContain("informational: only backend 'libvirt' needs it")
  })

  it('makes the same failure a required one with VMHARNESS_BACKEND=libvirt', async (context) => {
    if (!(await findBinary('virsh'))) skipBecause(context, 'virsh missing (Debian package libvirt-clients)')
    const check = await checkLibvirt({ PATH: process.env.PATH, VMHARNESS_LIBVIRT_URI: missingSocket, VMHARNESS_BACKEND: 'libvirt' })
    expect(check).toMatchObject({ ok: false, required: true })
    expect(check.lines.at(-1)).toContain('VMHARNESS_BACKEND=libvirt: the libvirt backend needs this, so doctor fails on it')
  })

  it('reports the daemon and QEMU versions of a daemon that answers, asking qemu:///system by default', async () => {
    const { run, calls } = fakeRunner(() => ({ stdout: versionOutput }))
    const check = await checkLibvirt({}, { ...found, runVirsh: run })
    expect(check).toEqual({ lines: ['libvirt: qemu:///system answers (libvirt 9.0.0, QEMU 7.2.22)'], ok: true, required: false })
    expect(calls).toEqual([{ virsh: '/usr/bin/virsh', args: ['-q', '-c', 'qemu:///system', 'version', '--daemon'], timeoutMs: 20_000 }])
  })

  it('checks every URI of a comma-separated VMHARNESS_LIBVIRT_URI; a remote one without a terminal prompt, with the SSH login to check', async () => {
    const remote = 'qemu+ssh://tester@build-host:2222/system?keyfile=/keys/id_ed25519'
    const { run, calls } = fakeRunner((uri) =>
      uri.startsWith('qemu+ssh') ? { exitCode: 1, stderr: 'error: failed to connect to the hypervisor\nerror: Cannot recv data: Warning: Identity file /keys/id_ed25519 not accessible: No such file or directory.\nroot@build-host: Permission denied (publickey).: Connection reset by peer\n' } : { stdout: versionOutput },
    )
    const check = await checkLibvirt({ VMHARNESS_LIBVIRT_URI: `qemu:///system, ${remote}`, VMHARNESS_BACKEND: 'libvirt' }, { ...found, runVirsh: run })
    expect(calls.map((call) => call.args[2])).toEqual(['qemu:///system', `${remote}&no_tty=1`])
    expect(check.ok).toBe(false)
    expect(check.required).toBe(true)
    expect(check.lines[0]).toBe('libvirt: qemu:///system answers (libvirt 9.0.0, QEMU 7.2.22)')
    expect(check.lines[1]).toBe(`libvirt: ${remote} does not answer: Cannot recv data: Warning: Identity file /keys/id_ed25519 not accessible: No such file or directory. root@build-host: Permission denied (publickey).: Connection reset by peer`)
    expect(check.lines.join('\n')).toContain('`ssh -p 2222 -i /keys/id_ed25519 tester@build-host true` logs in without a password')
    expect(check.lines.join('\n')).toContain('libvirtd runs on build-host')
  })

  it('says when a daemon gives no answer within the timeout', async () => {
    const { run } = fakeRunner(() => ({ exitCode: undefined, timedOut: true }))
    const check = await checkLibvirt({}, { ...found, runVirsh: run })
    expect(check.ok).toBe(false)
    expect(check.lines[0]).toBe('libvirt: qemu:///system does not answer: no answer within 20 s')
  })

  it('does not check without virsh, and says what it would need', async () => {
    const check = await checkLibvirt({}, { findVirsh: async () => undefined })
    expect(check).toEqual({ lines: ["libvirt: not checked (virsh missing: Debian package libvirt-clients; needed only for backend: 'libvirt')"], ok: false, required: false })
  })

  it('says what is wrong with a VMHARNESS_LIBVIRT_URI the backend would refuse', async () => {
    const check = await checkLibvirt({ VMHARNESS_LIBVIRT_URI: 'test:///default' }, found)
    expect(check.ok).toBe(false)
    expect(check.lines[0]).toMatch(/^libvirt: not checked: VMHARNESS_LIBVIRT_URI: 'test:\/\/\/default' is not a QEMU URI/)
  })
})

describe("vmharness doctor's exit code and libvirt", () => {
  async function runDoctor(env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
    const lines: string[] = []
    const code = await doctor({ install: false, write: (line) => lines.push(line), env: { PATH: process.env.PATH, ...env } })
    return { code, output: lines.join('\n') }
  }

  it('stays 0 when the daemon does not answer, unless VMHARNESS_BACKEND=libvirt', async (context) => {
    if (!(await findBinary('virsh'))) skipBecause(context, 'virsh missing (Debian package libvirt-clients)')
    const plain = await runDoctor({ VMHARNESS_LIBVIRT_URI: missingSocket })
    expect(plain.output).toContain(`libvirt: ${missingSocket} does not answer`)
    expect(plain.output).toContain('\nready: ')
    expect(plain.code).toBe(0)

    const qemuBackend = await runDoctor({ VMHARNESS_LIBVIRT_URI: missingSocket, VMHARNESS_BACKEND: 'qemu' })
    expect(qemuBackend.code).toBe(0)

    const libvirtBackend = await runDoctor({ VMHARNESS_LIBVIRT_URI: missingSocket, VMHARNESS_BACKEND: 'libvirt' })
    expect(libvirtBackend.output).toContain('not ready: VMHARNESS_BACKEND=libvirt, and libvirt is not usable')
    expect(libvirtBackend.output).not.toContain('\nready: ')
    expect(libvirtBackend.code).toBe(1)
  })
})
