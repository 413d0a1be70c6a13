import { statSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Readable } from 'node:stream'
import { CommandError, HypervisorError, SpecError, SshError, UnsupportedError } from '../errors.js'
import { canKeep, canLink, canSnapshot, canSuspend } from '../hypervisor/capabilities.js'
import type { Hypervisor, SnapshotInfo, SnapshotOptions, VmHandle, VmState } from '../hypervisor/hypervisor.js'
import { chooseBackend, hypervisorFor } from '../hypervisor/router.js'
import type { VmSpec } from '../spec/vm-spec.js'
import type { JoinableNetwork, NetworkAttachment } from '../spec/network-attachment.js'
import { joinSpecNetworks } from './spec-networks.js'
import { attachmentNamed } from '../hypervisor/network-choice.js'
import { waitForNetworkAddresses } from './network-readiness.js'
import { forget, introduce } from './network-neighbours.js'
import { pointAtOutsideProxy } from './outside-proxy-setup.js'
import { resolveSpec } from '../spec/vm-spec.js'
import type { KeptVm } from '../hypervisor/keep/kept-vms.js'
import { progressReporter, type ProgressReporter } from './progress.js'
import { PortForward } from '../ssh/port-forward.js'
import { copyFromGuest, copyToGuest, type CopySummary } from '../ssh/sftp-copy.js'
import type { ExecOptions, ExecResult, SshSession } from '../ssh/ssh-session.js'
import { reconnectAfterRestore } from './after-restore.js'
import { defaultBootTimeoutMs, waitForBoot } from './boot-wait.js'
import { installGuestRefresh, refreshGuest } from './guest-refresh.js'
import { followConsoleLog } from './console-stream.js'
import * as waits from './guest-waits.js'
import type { WaitOptions } from './poll.js'

export interface StartOptions {
  /** A backend instance to use instead of the one the spec names (tests of the layers above). */
  hypervisor?: Hypervisor
  signal?: AbortSignal
  /** Where progress on long work goes (image builds, boots): default one updating line on stderr, or plain lines when it is not a terminal; VMHARNESS_PROGRESS=0 silences it. */
  onProgress?: (line: string) => void
  /**
   * A clone (`restoreFrom`) stays paused once its state is loaded, with no SSH session yet: call
   * `resume()`, then `reconnect()`. For starting several clones at one instant (a group).
   */
  leavePaused?: boolean
}

let sharedProgress: ProgressReporter | undefined

function defaultProgress(): ((line: string) => void) | undefined {
  if (process.env.VMHARNESS_PROGRESS === '0') return undefined
  sharedProgress ??= progressReporter(process.stderr)
  return sharedProgress
}

/** A record of one command a test ran, for failure reports. */
export interface CommandRecord {
  command: string
  exitCode: number | null
  signal: string | null
  durationMs: number
}

/** A started VM. `stop` and `destroy` may be called any number of times; `await using` destroys it. */
export class Vm implements AsyncDisposable {
  readonly commands: CommandRecord[] = []
  /** Set once the VM was destroyed or kept: this handle drives it no more. */
  private relinquished = false
  private readonly forwards: PortForward[] = []
  /** Where the console log stood when the current state began (boot or restore): console waits read from here. */
  private consoleOffset = 0

  private constructor(
    readonly hypervisor: Hypervisor,
    readonly handle: VmHandle,
    private session: SshSession | undefined,
    /** The networks this VM joined itself (given as Network objects): it leaves them when destroyed. */
    private readonly joined: JoinableNetwork[],
  ) {
    // A booted guest's whole log is this state's; a clone's log begins with the saved guest's.
    if (handle.restoredFrom) this.markConsoleStart()
  }

  /** Validates the spec, prepares and boots the VM, and waits until it answers SSH. */
  static async start(spec: VmSpec, startOptions: StartOptions = {}): Promise<Vm> {
    const options = { ...startOptions, onProgress: startOptions.onProgress ?? defaultProgress() }
    const { attachments, joined, machine } = joinSpecNetworks(spec)
    try {
      return await Vm.startJoined({ ...spec, networks: attachments }, options, joined)
    } catch (error) {
      for (const network of joined) network.leave(machine)
      throw error
    }
  }

  private static async startJoined(spec: VmSpec, options: StartOptions, joined: JoinableNetwork[]): Promise<Vm> {
    const resolved = resolveSpec(spec)
    const hypervisor = options.hypervisor ?? hypervisorFor(await chooseBackend(resolved.backend))
    if (options.hypervisor && resolved.backend !== 'auto' && resolved.backend !== options.hypervisor.name) {
      throw new SpecError(`names '${resolved.backend}' but the hypervisor given is '${options.hypervisor.name}'`, 'backend')
    }
    const handle = await hypervisor.prepare(resolved, options)
    try {
      const paused = options.leavePaused === true && handle.restoredFrom !== undefined
      await hypervisor.start(handle, { signal: options.signal, leavePaused: paused })
      let session: SshSession | undefined
      if (handle.ssh && !paused) {
        session = handle.restoredFrom
          ? await reconnectAfterRestore(hypervisor, handle, options.signal)
          : await waitForBoot(hypervisor, handle, handle.ssh, { timeoutMs: resolved.bootTimeoutMs ?? defaultBootTimeoutMs[handle.accel], signal: options.signal, onProgress: options.onProgress })
        if (!handle.restoredFrom) {
          await prepareFreshGuest(session, handle.name, resolved.outsideAccess)
          // A restored guest's addresses were up when it was saved.
          const ready = session
          await waitForNetworkAddresses(handle.name, (command, execOptions) => ready.exec(command, execOptions), resolved.networks, options.signal).catch((error: unknown) => {
            ready.close()
            throw error
          })
        }
      }
      const vm = new Vm(hypervisor, handle, session, joined)
      await introduce(vm, joined).catch(async (error: unknown) => {
        forget(vm, joined)
        await vm.destroy()
        throw error
      })
      return vm
    } catch (error) {
      await hypervisor.destroy(handle)
      throw error
    }
  }

  get name(): string {
    return this.handle.name
  }

  /** Runs a command in the guest (through `sh -c`) and returns its output and exit status, whatever it is. */
  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const session = this.requireSession('exec')
    const started = Date.now()
    let result: ExecResult
    try {
      result = await session.exec(command, options)
    } catch (error) {
      this.commands.push({ command, exitCode: null, signal: null, durationMs: Date.now() - started })
      throw await this.explainLostCommand(command, error)
    }
    this.commands.push({ command, exitCode: result.exitCode, signal: result.signal, durationMs: Date.now() - started })
    return result
  }

  /** A command cut off by a VM that died says so, with how it died and its console's last lines. */
  private async explainLostCommand(command: string, error: unknown): Promise<unknown> {
    let state = await this.hypervisor.state(this.handle).catch(() => undefined)
    if (state?.status === 'running' && state.detail === 'monitor not answering') {
      // The connection can drop a moment before a dying process's exit is reaped.
      await Promise.race([this.handle.exited, sleep(500, undefined, { ref: false })])
      state = await this.hypervisor.state(this.handle).catch(() => undefined)
    }
    if (state?.status !== 'crashed' && state?.status !== 'stopped') return error
    return new HypervisorError(`the VM ended while running '${command}' (${state.detail ?? state.status})`, {
      vm: this.name,
      cause: error,
      consoleTail: await this.consoleTail(10),
    })
  }

  /** Runs a command that must exit 0; returns its stdout, else throws CommandError. */
  async succeed(command: string, options: ExecOptions = {}): Promise<string> {
    const result = await this.exec(command, options)
    if (result.exitCode !== 0) throw new CommandError('was expected to succeed', result, this.name)
    return result.stdout
  }

  /** Runs a command that must fail (non-zero exit); returns the result, else throws CommandError. */
  async fail(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const result = await this.exec(command, options)
    if (result.exitCode === 0) throw new CommandError('was expected to fail', result, this.name)
    return result
  }

  /** Retries `command` until it exits 0 (default timeout 60 s); returns its stdout, else WaitTimeoutError with its last output. */
  waitUntilSucceeds(command: string, options: WaitOptions = {}): Promise<string> {
    return waits.waitUntilSucceeds(this.waitTarget(), command, options)
  }

  /** Retries `command` until it exits non-zero; returns that result. */
  waitUntilFails(command: string, options: WaitOptions = {}): Promise<ExecResult> {
    return waits.waitUntilFails(this.waitTarget(), command, options)
  }

  /** Waits for a systemd unit to be active; a failed unit throws UnitFailedError with its `systemctl status`. */
  waitForUnit(unit: string, options: WaitOptions = {}): Promise<void> {
    return waits.waitForUnit(this.waitTarget(), unit, options)
  }

  /** Waits until something in the guest listens on TCP `port`. */
  waitForOpenPort(port: number, options: WaitOptions = {}): Promise<void> {
    return waits.waitForOpenPort(this.waitTarget(), port, options)
  }

  /** Waits until `path` exists in the guest. */
  waitForFile(path: string, options: WaitOptions = {}): Promise<void> {
    return waits.waitForFile(this.waitTarget(), path, options)
  }

  /** Waits for a console line (printed since this boot or restore) containing `text` or matching it; returns the line. */
  waitForConsoleText(text: string | RegExp, options: WaitOptions = {}): Promise<string> {
    return waits.waitForConsoleText(this.waitTarget(), text, this.consoleOffset, options)
  }

  /** The serial console from now on as a byte stream; it ends when the VM is destroyed. Destroy it to stop reading. */
  console(options: { fromStart?: boolean } = {}): Readable {
    const logPath = this.consoleLogPath()
    if (!logPath) throw new UnsupportedError(this.hypervisor.name, 'console')
    return followConsoleLog(logPath, options.fromStart ? 0 : fileSize(logPath), () => this.relinquished)
  }

  /** Copies a host file, or a directory tree, to `guestPath` (modes kept). */
  async copyTo(localPath: string, guestPath: string): Promise<CopySummary> {
    const sftp = await this.requireSession('copyTo').sftp()
    return copyToGuest(sftp, localPath, guestPath).catch((error: Error) => {
      throw new HypervisorError(`copyTo ${guestPath}: ${error.message}`, { vm: this.name, cause: error })
    })
  }

  /** Copies a guest file, or a directory tree, to `localPath` on the host (modes kept). */
  async copyFrom(guestPath: string, localPath: string): Promise<CopySummary> {
    const sftp = await this.requireSession('copyFrom').sftp()
    return copyFromGuest(sftp, guestPath, localPath).catch((error: Error) => {
      throw new HypervisorError(`copyFrom ${guestPath}: ${error.message}`, { vm: this.name, cause: error })
    })
  }

  /**
   * A port on 127.0.0.1 whose connections reach `guestPort` on the guest's loopback, through
   * SSH. It lasts until the VM is destroyed and survives restores.
   */
  async forwardPort(guestPort: number): Promise<number> {
    this.requireSession('forwardPort')
    const forward = await PortForward.open(guestPort, () => this.requireSession('forwardPort'))
    this.forwards.push(forward)
    return forward.port
  }

  /** Copies a host file into the guest over sftp. */
  async putFile(localPath: string, guestPath: string): Promise<void> {
    await this.requireSession('sftp').put(localPath, guestPath)
  }

  /** Copies a guest file to the host over sftp. */
  async getFile(guestPath: string, localPath: string): Promise<void> {
    await this.requireSession('sftp').get(guestPath, localPath)
  }

  async suspend(): Promise<void> {
    await this.capable(canSuspend, 'suspend').suspend(this.handle)
  }

  async resume(): Promise<void> {
    await this.capable(canSuspend, 'resume').resume(this.handle)
  }

  state(): Promise<VmState> {
    return this.hypervisor.state(this.handle)
  }

  /**
   * The guest's address on `network` (its first network when none is named): 192.168.k.n. On no
   * network, the address of its management NIC as the guest itself reports it (reachable only
   * from inside the guest: the host reaches it through SSH and `forwardPort`).
   */
  async guestIp(network?: string | JoinableNetwork): Promise<string> {
    if (network === undefined && this.handle.spec.networks.length === 0 && this.handle.ssh) return this.managementAddress()
    return this.hypervisor.guestIp(this.handle, network === undefined ? undefined : this.attachment(network).network)
  }

  /** The guest's IPv6 address on `network` (its first network when none is named): 2001:db8:k::n. */
  guestIp6(network?: string | JoinableNetwork): string {
    return this.attachment(network).ipv6
  }

  /** The networks this VM is on, with its addresses there. */
  get networks(): readonly NetworkAttachment[] {
    return this.handle.spec.networks
  }

  /** Takes the VM's link on `network` (its first when none is named) down: the guest sees its carrier drop and nothing passes either way. */
  async block(network?: string | JoinableNetwork): Promise<void> {
    const attachment = this.attachment(network)
    await this.capable(canLink, 'block').setLink(this.handle, attachment.network, false)
  }

  /** Brings the link `block` took down back up. */
  async unblock(network?: string | JoinableNetwork): Promise<void> {
    const attachment = this.attachment(network)
    await this.capable(canLink, 'unblock').setLink(this.handle, attachment.network, true)
  }

  /** The attachment to a network given by name, or as the object (found by its switch: two networks may share a name). */
  private attachment(network: string | JoinableNetwork | undefined): NetworkAttachment {
    if (typeof network === 'object') {
      const found = this.handle.spec.networks.find((attachment) => attachment.switchSocket === network.switchSocket)
      if (found) return found
    }
    return attachmentNamed(this.handle, typeof network === 'object' ? network.name : network)
  }

  /**
   * Runs a command for the harness's own purposes: like `succeed`, but left out of `commands`
   * (a failure report lists what the test ran).
   */
  async harnessCommand(command: string): Promise<string> {
    const result = await this.requireSession('exec').exec(command)
    if (result.exitCode !== 0) throw new CommandError('was expected to succeed', result, this.name)
    return result.stdout
  }

  private async managementAddress(): Promise<string> {
    const route = await this.harnessCommand('ip -o -4 route get 10.0.2.2')
    const address = /\bsrc\s+([0-9.]+)/.exec(route)?.[1]
    if (!address) throw new HypervisorError(`cannot tell the management address from 'ip route get': ${route.trim()}`, { vm: this.name })
    return address
  }

  consoleTail(lines = 20): Promise<string> {
    return this.hypervisor.consoleTail(this.handle, lines)
  }

  /**
   * Saves the VM under `name`. 'internal' (the default) suits rolling one VM back; 'external'
   * writes a directory that `restoreFrom` can start any number of clones from.
   */
  async snapshot(name: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    const info = await this.saveOnly(name, options)
    // The guest was paused while it was saved, and its clock stood still meanwhile.
    await this.refreshAfterPause(`snapshot '${name}' was saved`)
    return info
  }

  /** Puts the VM back to a snapshot, reconnects SSH, reseeds the guest RNG and sets its clock from the host before returning. */
  async restore(name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.restoreOnly(name, options)
    await this.reconnect(options.signal)
  }

  /**
   * The halves of snapshot and restore, for machines handled together (see machine/vm-group.ts):
   * the save or load alone, leaving the guest as it was (or paused), with no SSH work.
   */
  async saveOnly(name: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    const hypervisor = this.capable(canSnapshot, 'snapshot')
    this.requireAlive('snapshot')
    return hypervisor.snapshot(this.handle, name, options)
  }

  async restoreOnly(name: string, options: { signal?: AbortSignal; leavePaused?: boolean } = {}): Promise<void> {
    const hypervisor = this.capable(canSnapshot, 'restore')
    this.requireAlive('restore')
    // An unknown name fails here with the VM untouched, so the old session is kept until the restore went ahead.
    await hypervisor.restore(this.handle, name, options)
    this.session?.close()
    this.session = undefined
    this.markConsoleStart()
  }

  /** A new SSH session after `restoreOnly`, with the guest's RNG reseeded and clock set. */
  async reconnect(signal?: AbortSignal): Promise<void> {
    if (this.handle.ssh) this.session = await reconnectAfterRestore(this.hypervisor, this.handle, signal)
  }

  /** The guest's clock stood still while it was paused, and a saved state's RNG must not be shared: both renewed. */
  async refreshAfterPause(what = 'the VM was paused'): Promise<void> {
    if (!this.session || this.session.isClosed) return
    await refreshGuest(this.session, this.name).catch((error: Error) => {
      throw new HypervisorError(`${what}, but setting the guest clock afterwards failed: ${error.message}`, { vm: this.name, cause: error })
    })
  }

  /**
   * Leaves this VM running after the test run, for a person to reach with `vmharness ssh`; this
   * handle is finished with it (as after destroy). Needs VMHARNESS_KEEP=on-failure when it started.
   */
  async keep(reason: string): Promise<KeptVm> {
    const hypervisor = this.capable(canKeep, 'keep')
    this.requireAlive('keep')
    const kept = await hypervisor.keep(this.handle, reason)
    await this.relinquish()
    return kept
  }

  async listSnapshots(): Promise<SnapshotInfo[]> {
    return this.capable(canSnapshot, 'listSnapshots').listSnapshots(this.handle)
  }

  /** Powers the guest off (ACPI), forcing it after `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.session?.close()
    this.session = undefined
    if (this.relinquished) return
    await this.hypervisor.stop(this.handle, timeoutMs)
  }

  /** Stops the VM at once and removes its overlay, sockets, logs and run directory. */
  async destroy(): Promise<void> {
    if (this.relinquished) return
    await this.relinquish()
    await this.hypervisor.destroy(this.handle)
    forget(this, this.joined)
    for (const network of this.joined.splice(0)) network.leave(this.name)
  }

  /** Gives up this handle's hold on the VM (destroyed or kept): its SSH session and port forwards. */
  private async relinquish(): Promise<void> {
    this.relinquished = true
    this.session?.close()
    this.session = undefined
    await Promise.all(this.forwards.splice(0).map((forward) => forward.close()))
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }

  private consoleLogPath(): string | undefined {
    const endpoint = this.hypervisor.consoleEndpoint(this.handle)
    return endpoint.kind === 'unix-socket' ? endpoint.logPath : undefined
  }

  private markConsoleStart(): void {
    const logPath = this.consoleLogPath()
    this.consoleOffset = logPath ? fileSize(logPath) : 0
  }

  private waitTarget(): waits.WaitTarget {
    return { name: this.name, exec: (command, options) => this.exec(command, options), consoleLogPath: () => this.consoleLogPath() }
  }

  /** The backend, seen through a capability guard; an UnsupportedError naming `operation` when it lacks that capability. */
  private capable<H extends Hypervisor>(guard: (hypervisor: Hypervisor) => hypervisor is H, operation: string): H {
    if (!guard(this.hypervisor)) throw new UnsupportedError(this.hypervisor.name, operation)
    return this.hypervisor
  }

  private requireAlive(operation: string): void {
    if (this.relinquished) throw new HypervisorError(`cannot ${operation}: the VM was destroyed or kept (this handle no longer drives it)`, { vm: this.name })
  }

  private requireSession(operation: string): SshSession {
    if (!this.handle.ssh) throw new UnsupportedError(this.hypervisor.name, operation)
    if (this.relinquished) throw new HypervisorError(`cannot ${operation}: the VM was destroyed or kept (this handle no longer drives it)`, { vm: this.name })
    if (this.session?.isClosed) {
      throw new SshError(`cannot ${operation}: the connection to the guest was lost (its sshd or network went away, or the VM stopped); a restore reconnects`, this.session.endpoint)
    }
    if (!this.session) throw new HypervisorError(`cannot ${operation}: no SSH session (the VM was stopped?)`, { vm: this.name })
    return this.session
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size
  } catch {
    return 0
  }
}

/**
 * A booted guest gets the refresh program that every restore of its states runs, and a clock
 * set as precisely as a restored one (its own start-up set it to the second at best).
 */
async function prepareFreshGuest(session: SshSession, vmName: string, outsideAccess: boolean): Promise<void> {
  try {
    await installGuestRefresh(session, vmName)
    await refreshGuest(session, vmName)
    if (outsideAccess) await pointAtOutsideProxy(session, vmName)
  } catch (error) {
    session.close()
    throw error
  }
}
