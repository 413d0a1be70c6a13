import { execa } from 'execa'
import { isVmHarnessError } from '../errors.js'
import { findBinary } from '../host/find-binary.js'
import { defaultLibvirtUri, parseLibvirtUris, type LibvirtTarget } from '../hypervisor/libvirt/libvirt-uri.js'

/** How long doctor waits for one daemon's answer. */
export const libvirtProbeTimeoutMs = 20_000

export interface VirshResult {
  /** Undefined when virsh did not run or was killed. */
  exitCode: number | undefined
  stdout: string
  stderr: string
  timedOut: boolean
  /** Why virsh could not be run at all (spawn failure), if so. */
  failure?: string
}

/** Runs virsh with `args`; what it printed and how it ended. Injected in tests. */
export type VirshRunner = (virsh: string, args: readonly string[], timeoutMs: number) => Promise<VirshResult>

export interface LibvirtCheckOptions {
  /** Where virsh is; default: PATH (env's) and the system directories. */
  findVirsh?: () => Promise<string | undefined>
  runVirsh?: VirshRunner
  timeoutMs?: number
}

export interface LibvirtCheck {
  /** What doctor prints, one entry a line. */
  lines: string[]
  /** Every daemon the libvirt backend would use answered. */
  ok: boolean
  /** VMHARNESS_BACKEND=libvirt: a problem here fails doctor. Otherwise the check is informational (qemu users need no libvirt). */
  required: boolean
}

/**
 * Asks each daemon the libvirt backend would use (VMHARNESS_LIBVIRT_URI, a comma-separated list,
 * else qemu:///system) whether it answers, with `virsh version`, and says what to start or fix.
 */
export async function checkLibvirt(env: NodeJS.ProcessEnv = process.env, options: LibvirtCheckOptions = {}): Promise<LibvirtCheck> {
  const required = env.VMHARNESS_BACKEND === 'libvirt'
  const timeoutMs = options.timeoutMs ?? libvirtProbeTimeoutMs
  const virsh = await (options.findVirsh ?? (() => findBinary('virsh', env)))()
  if (!virsh) {
    return { lines: ["libvirt: not checked (virsh missing: Debian package libvirt-clients; needed only for backend: 'libvirt')"], ok: false, required }
  }
  let targets: LibvirtTarget[]
  try {
    targets = env.VMHARNESS_LIBVIRT_URI ? parseLibvirtUris(env.VMHARNESS_LIBVIRT_URI, 'VMHARNESS_LIBVIRT_URI') : parseLibvirtUris(defaultLibvirtUri, 'libvirtUri')
  } catch (error) {
    if (!isVmHarnessError(error)) throw error
    return { lines: [`libvirt: not checked: ${error.message}`, ...informational(required)], ok: false, required }
  }
  const run = options.runVirsh ?? runVirsh
  const probes = await Promise.all(targets.map((target) => probe(target, virsh, run, timeoutMs)))
  const ok = probes.every((result) => result.ok)
  return { lines: [...probes.flatMap((result) => result.lines), ...(ok ? [] : informational(required))], ok, required }
}

async function probe(target: LibvirtTarget, virsh: string, run: VirshRunner, timeoutMs: number): Promise<{ ok: boolean; lines: string[] }> {
  const result = await run(virsh, ['-q', '-c', probeUri(target), 'version', '--daemon'], timeoutMs)
  if (result.exitCode === 0) return { ok: true, lines: [`libvirt: ${target.uri} answers (${versions(result.stdout)})`] }
  return { ok: false, lines: [`libvirt: ${target.uri} does not answer: ${reason(result, timeoutMs)}`, ...fix(target).map((line) => `  ${line}`)] }
}

/** For qemu+ssh, `no_tty=1`: ssh fails instead of asking for a password or a host key on the terminal. */
function probeUri(target: LibvirtTarget): string {
  if (!target.remote || /[?&]no_tty=/.test(target.uri)) return target.uri
  return `${target.uri}${target.uri.includes('?') ? '&' : '?'}no_tty=1`
}

/** `libvirt X, QEMU Y` from `virsh version --daemon` (the daemon's version, else the client library's). */
function versions(stdout: string): string {
  const libvirt = /^Running against daemon:\s*(\S+)/m.exec(stdout)?.[1] ?? /^Using library:\s*libvirt\s+(\S+)/m.exec(stdout)?.[1] ?? 'version unknown'
  const hypervisor = /^Running hypervisor:\s*(.+)$/m.exec(stdout)?.[1]?.trim() ?? 'QEMU version unknown'
  return `libvirt ${libvirt}, ${hypervisor}`
}

/**
 * virsh's first error that says more than "failed to connect to the hypervisor", on one line: an
 * error of the ssh transport goes on over the lines after it (ssh's own stderr).
 */
function reason(result: VirshResult, timeoutMs: number): string {
  const errors: string[] = []
  for (const line of result.stderr.split('\n').map((text) => text.trim()).filter(Boolean)) {
    if (/^error:/.test(line) || errors.length === 0) errors.push(line.replace(/^error:\s*/, ''))
    else errors[errors.length - 1] += ` ${line}`
  }
  const telling = errors.find((error) => !/^failed to connect to the hypervisor$/i.test(error)) ?? errors[0]
  if (result.timedOut) return `no answer within ${Math.round(timeoutMs / 1000)} s${telling ? ` (${telling})` : ''}`
  return telling ?? result.failure ?? `virsh ended with exit code ${result.exitCode ?? 'none'}`
}

function fix(target: LibvirtTarget): string[] {
  const { remote } = target
  if (remote) {
    const login = ['ssh', ...(remote.port !== 22 ? ['-p', String(remote.port)] : []), ...(remote.keyfile ? ['-i', remote.keyfile] : []), `${remote.user}@${remote.host}`, 'true'].join(' ')
    return [
      `fix: check that \`${login}\` logs in without a password or prompt (${remote.keyfile ? "the URI's keyfile" : 'no keyfile in the URI: your default keys'}; the host key must be known),`,
      `     and that libvirtd runs on ${remote.host} (systemctl start libvirtd there, and install libvirt-daemon-system if it is missing)`,
    ]
  }
  if (new URL(target.uri).pathname === '/session') {
    return ["fix: qemu:///session is a daemon of your own that virsh starts on demand: check that libvirtd is installed (Debian package libvirt-daemon)"]
  }
  return [
    'fix: start libvirtd: `systemctl start libvirtd` where systemd runs, else `libvirtd -d` as root (Debian package libvirt-daemon-system);',
    '     on a test machine keep it in a network namespace of its own: scripts/libvirt-sandbox does that',
  ]
}

function informational(required: boolean): string[] {
  return required
    ? ['  VMHARNESS_BACKEND=libvirt: the libvirt backend needs this, so doctor fails on it']
    : ["  (informational: only backend 'libvirt' needs it; doctor fails on it only with VMHARNESS_BACKEND=libvirt)"]
}

const runVirsh: VirshRunner = async (virsh, args, timeoutMs) => {
  const result = await execa(virsh, args, { reject: false, timeout: timeoutMs, stdin: 'ignore', env: { LC_ALL: 'C' } })
  return {
    exitCode: result.exitCode,
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    timedOut: result.timedOut,
    failure: result.failed && result.exitCode === undefined ? result.shortMessage : undefined,
  }
}
