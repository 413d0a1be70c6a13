import { CommandError, HypervisorError, SpecError, UnsupportedError } from '../errors.js'
import type { Hypervisor, SnapshotInfo, SnapshotOptions, VmHandle, VmState } from '../hypervisor/hypervisor.js'
import { chooseBackend, hypervisorFor } from '../hypervisor/router.js'
import type { VmSpec } from '../spec/vm-spec.js'
import { resolveSpec } from '../spec/vm-spec.js'
import type { ExecOptions, ExecResult, SshSession } from '../ssh/ssh-session.js'
import { reconnectAfterRestore } from './after-restore.js'
import { defaultBootTimeoutMs, waitForBoot } from './boot-wait.js'

export interface StartOptions {
  /** A backend instance to use instead of the one the spec names (tests of the layers above). */
  hypervisor?: Hypervisor
  signal?: AbortSignal
  onProgress?: (line: string) => void
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
  private destroyed = false

  private constructor(
    readonly hypervisor: Hypervisor,
    readonly handle: VmHandle,
    private session: SshSession | undefined,
  ) {}

  /** Validates the spec, prepares and boots the VM, and waits until it answers SSH. */
  static async start(spec: VmSpec, options: StartOptions = {}): Promise<Vm> {
    const resolved = resolveSpec(spec)
    const hypervisor = options.hypervisor ?? hypervisorFor(await chooseBackend(resolved.backend))
    if (options.hypervisor && resolved.backend !== 'auto' && resolved.backend !== options.hypervisor.name) {
      throw new SpecError(`names '${resolved.backend}' but the hypervisor given is '${options.hypervisor.name}'`, 'backend')
    }
    const handle = await hypervisor.prepare(resolved, options)
    try {
      await hypervisor.start(handle, options)
      let session: SshSession | undefined
      if (hypervisor.features.has('ssh') && handle.ssh) {
        session = handle.restoredFrom
          ? await reconnectAfterRestore(hypervisor, handle, options.signal)
          : await waitForBoot(hypervisor, handle, handle.ssh, { timeoutMs: resolved.bootTimeoutMs ?? defaultBootTimeoutMs[handle.accel], signal: options.signal })
      }
      return new Vm(hypervisor, handle, session)
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
    const result = await session.exec(command, options)
    this.commands.push({ command, exitCode: result.exitCode, signal: result.signal, durationMs: Date.now() - started })
    return result
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

  /** Copies a host file into the guest over sftp. */
  async putFile(localPath: string, guestPath: string): Promise<void> {
    await this.requireSession('sftp').put(localPath, guestPath)
  }

  /** Copies a guest file to the host over sftp. */
  async getFile(guestPath: string, localPath: string): Promise<void> {
    await this.requireSession('sftp').get(guestPath, localPath)
  }

  async suspend(): Promise<void> {
    if (!this.hypervisor.features.has('suspend')) throw new UnsupportedError(this.hypervisor.name, 'suspend')
    await this.hypervisor.suspend(this.handle)
  }

  async resume(): Promise<void> {
    if (!this.hypervisor.features.has('suspend')) throw new UnsupportedError(this.hypervisor.name, 'resume')
    await this.hypervisor.resume(this.handle)
  }

  state(): Promise<VmState> {
    return this.hypervisor.state(this.handle)
  }

  guestIp(): Promise<string> {
    return this.hypervisor.guestIp(this.handle)
  }

  consoleTail(lines = 20): Promise<string> {
    return this.hypervisor.consoleTail(this.handle, lines)
  }

  /**
   * Saves the VM under `name`. 'internal' (the default) suits rolling one VM back; 'external'
   * writes a directory that `restoreFrom` can start any number of clones from.
   */
  async snapshot(name: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    if (!this.hypervisor.features.has('snapshot')) throw new UnsupportedError(this.hypervisor.name, 'snapshot')
    this.requireAlive('snapshot')
    return this.hypervisor.snapshot(this.handle, name, options)
  }

  /** Puts the VM back to a snapshot, reconnects SSH and sets the guest clock from the host before returning. */
  async restore(name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.hypervisor.features.has('snapshot')) throw new UnsupportedError(this.hypervisor.name, 'restore')
    this.requireAlive('restore')
    // An unknown name fails here with the VM untouched, so the old session is kept until the restore went ahead.
    await this.hypervisor.restore(this.handle, name, options)
    this.session?.close()
    this.session = undefined
    if (this.hypervisor.features.has('ssh')) this.session = await reconnectAfterRestore(this.hypervisor, this.handle, options.signal)
  }

  listSnapshots(): Promise<SnapshotInfo[]> {
    return this.hypervisor.listSnapshots(this.handle)
  }

  /** Powers the guest off (ACPI), forcing it after `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.session?.close()
    this.session = undefined
    if (this.destroyed) return
    await this.hypervisor.stop(this.handle, timeoutMs)
  }

  /** Stops the VM at once and removes its overlay, sockets, logs and run directory. */
  async destroy(): Promise<void> {
    this.session?.close()
    this.session = undefined
    if (this.destroyed) return
    this.destroyed = true
    await this.hypervisor.destroy(this.handle)
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }

  private requireAlive(operation: string): void {
    if (this.destroyed) throw new HypervisorError(`cannot ${operation}: the VM was destroyed`, { vm: this.name })
  }

  private requireSession(operation: string): SshSession {
    if (!this.hypervisor.features.has('ssh')) throw new UnsupportedError(this.hypervisor.name, operation)
    if (this.destroyed) throw new HypervisorError(`cannot ${operation}: the VM was destroyed`, { vm: this.name })
    if (!this.session || this.session.isClosed) throw new HypervisorError(`cannot ${operation}: no SSH session (the VM was stopped?)`, { vm: this.name })
    return this.session
  }
}
