import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { HostError } from '../../errors.js'
import { findBinary } from '../../host/find-binary.js'
import { missingRequirement } from '../../host/requirements.js'
import { PromiseCache } from '../../common/promise-cache.js'
import { HostJump } from './host-jump.js'
import { LibvirtError } from './libvirt-error.js'
import type { LibvirtTarget } from './libvirt-uri.js'
import { ShellSlots } from './shell-slots.js'
import { VirshShell } from './virsh-shell.js'

/** Shells kept open per host; a quick command stuck behind long ones on all of them gets one more, up to the second count. */
const shellsPerHost = 3
const mostShellsPerHost = 5
/** Commands given a longer time (saves, uploads, clones, reverts) are long: see ShellSlots. */
const defaultTimeoutMs = 120_000
/** How long a daemon that went away (a restart) is waited for before its commands fail. */
const reconnectWindowMs = 30_000

/** One libvirt host as this process uses it: a few virsh shells, and for a remote host the SSH jump to its guests. */
export class LibvirtConnection {
  readonly jump: HostJump | undefined
  private readonly shells: ShellSlots<VirshShell>

  private constructor(
    readonly target: LibvirtTarget,
    /** The virsh program this connection runs. */
    readonly virshPath: string,
    /** What `virsh version` says of the daemon and its QEMU: part of a golden snapshot's key. */
    readonly identity: string,
  ) {
    this.jump = target.remote ? new HostJump(target.remote) : undefined
    this.shells = new ShellSlots(() => new VirshShell(virshPath, target.uri), (shell) => shell.alive, shellsPerHost, mostShellsPerHost)
  }

  get uri(): string {
    return this.target.uri
  }

  /** Connects, or fails with a HostError that says why the daemon cannot be reached and what to do. */
  static async open(target: LibvirtTarget): Promise<LibvirtConnection> {
    const virsh = await findBinary('virsh')
    if (!virsh) throw missingRequirement('virsh')
    const result = await execa(virsh, ['-q', '-c', target.uri, 'version'], { reject: false, timeout: 60_000, env: { LC_ALL: 'C' } })
    if (result.exitCode !== 0) throw unreachable(target, virshErrors(`${result.stderr}`) || (result.timedOut ? 'no answer within 60 s' : `virsh ended with ${result.exitCode}`))
    const identity = `${result.stdout}`
      .split('\n')
      .filter((line) => /library|hypervisor/i.test(line))
      .join('; ')
    return new LibvirtConnection(target, virsh, identity)
  }

  /**
   * Runs one virsh command on this host; its stdout, or a LibvirtError. A connection lost to a
   * daemon restart is waited out (up to reconnectWindowMs) and the command sent again once.
   */
  async run(args: readonly string[], timeoutMs = defaultTimeoutMs): Promise<string> {
    try {
      return await this.runOnce(args, timeoutMs)
    } catch (error) {
      if (!connectionLost(error)) throw error
      const deadline = Date.now() + reconnectWindowMs
      let last = error
      while (Date.now() < deadline) {
        await sleep(1_000)
        try {
          return await this.runOnce(args, timeoutMs)
        } catch (again) {
          if (!connectionLost(again)) throw again
          last = again
        }
      }
      throw new HostError(`lost the connection to libvirt at ${this.uri} and it did not come back within ${reconnectWindowMs / 1000} s: ${(last as Error).message}`, 'check that libvirtd runs there; the VMs it ran may still run (virsh list)', { cause: last })
    }
  }

  private async runOnce(args: readonly string[], timeoutMs: number): Promise<string> {
    const long = timeoutMs > defaultTimeoutMs
    const slot = this.shells.pick(long)
    slot.pending++
    if (long) slot.long++
    try {
      return await slot.shell.run(args, timeoutMs)
    } finally {
      slot.pending--
      if (long) slot.long--
      if (!slot.shell.alive && this.shells.remove(slot)) slot.shell.close()
    }
  }

  /** Runs a command and ignores its failure (cleanup of what may already be gone, or a probe): no waiting for a lost daemon. */
  async tryRun(args: readonly string[], timeoutMs = defaultTimeoutMs): Promise<boolean> {
    return this.runOnce(args, timeoutMs).then(
      () => true,
      () => false,
    )
  }

  close(): void {
    for (const { shell } of this.shells.slots.splice(0)) shell.close()
    this.jump?.close()
  }
}

/** virsh's error lines without its prefixes and its generic first line, joined into one. */
function virshErrors(stderr: string): string {
  return stderr
    .split('\n')
    .map((line) => line.replace(/^error: /, '').trim())
    .filter((line) => line && line !== 'failed to connect to the hypervisor')
    .join('; ')
}

/** Errors of a connection that broke (a daemon restart, say), rather than of the command. */
function connectionLost(error: unknown): boolean {
  return error instanceof LibvirtError && /no valid connection|End of file while reading data|Cannot recv data|Broken pipe|Connection reset|is gone|virsh ended|Failed to connect socket|failed to connect to the hypervisor/i.test(error.message)
}

function unreachable(target: LibvirtTarget, message: string): HostError {
  if (target.remote) {
    return new HostError(
      `cannot reach libvirt at ${target.uri}: ${message}`,
      `check the host name and port, that sshd runs there, that \`ssh -p ${target.remote.port} ${target.remote.user}@${target.remote.host}\` logs in without a password (the URI's keyfile), and that libvirtd runs on it`,
    )
  }
  return new HostError(
    `the libvirt daemon at ${target.uri} does not answer: ${message}`,
    'start it (systemctl start libvirtd where systemd runs; else `libvirtd -d` as root, in a network namespace of its own on a test machine: scripts/libvirt-sandbox does that), and install libvirt-daemon-system if it is missing',
  )
}

const connections = new PromiseCache<string, LibvirtConnection>()

/** One connection per URI and process. */
export function libvirtConnection(target: LibvirtTarget): Promise<LibvirtConnection> {
  return connections.get(target.uri, () => LibvirtConnection.open(target))
}
