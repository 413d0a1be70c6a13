import { SpecError } from '../errors.js'
import type { KeptVm } from '../hypervisor/keep/kept-vms.js'
import type { SnapshotKind } from '../hypervisor/hypervisor.js'
import { resolveSpec, type VmSpec } from '../spec/vm-spec.js'
import { availableParallelism } from 'node:os'
import { startFromGolden, type GoldenRecipe, type SetupFunction } from './golden.js'
import { defaultPoolSize } from './pool-size.js'
import { Vm, type StartOptions } from './vm.js'
import { WarmPool } from './warm-pool.js'

/** How a machine gets back to its clean state between tests. */
export type RollbackMode = 'snapshot' | 'reboot' | 'none'

export interface MachineConfig extends VmSpec {
  /** Runs once; its result is the golden snapshot every test starts from (cached on disk across runs). */
  setup?: SetupFunction
  /** Added to the golden snapshot's key: for values the setup reads from outside its own source text. */
  setupKey?: string
  /**
   * snapshot (default): back to the golden state; reboot: a fresh boot and setup per test;
   * none: the same VM throughout, changes kept.
   */
  rollback?: RollbackMode
  /**
   * Clean VMs restored ahead in the background (snapshot rollback); 0 turns the pool off. Default:
   * chosen from the host's cores, the accelerator and the VM's vCPUs (see `defaultPoolSize`).
   */
  pool?: number
  /**
   * How a used VM gets back to the golden state: 'internal' reloads it in its own process (with a
   * pool, in the background), 'external' replaces it with a fresh clone.
   */
  snapshotKind?: SnapshotKind
}

// Measured with bench/clean-state.ts: reloading in the same process beats starting a clone, both
// in a test's wait without a pool and in the CPU a pool spends per clean VM.
export const defaultSnapshotKind: SnapshotKind = 'internal'
const cleanTag = 'clean'

/**
 * One named machine of a test file: hands out a VM in its clean state for each test and takes
 * it back afterwards. Works without vitest (the fixtures wrap it).
 */
export class CleanMachine {
  private current: Vm | undefined
  private handedOut = false
  private started = false
  private pool: WarmPool | undefined
  private chosenPoolSize: number | undefined
  private goldenDir: string | undefined
  private readonly retiring = new Set<Promise<void>>()
  readonly rollback: RollbackMode
  readonly snapshotKind: SnapshotKind
  /** Whether the golden snapshot was built by this machine (rather than found in the cache). */
  goldenBuilt: boolean | undefined

  /** The golden snapshot's directory (what `restoreFrom` takes), once the first acquire has found or built it. */
  get goldenSnapshotDir(): string | undefined {
    return this.goldenDir
  }

  constructor(
    readonly name: string,
    private readonly config: MachineConfig,
    private readonly options: StartOptions = {},
  ) {
    this.rollback = checkChoice(config.rollback ?? 'snapshot', 'rollback', ['snapshot', 'reboot', 'none'])
    this.snapshotKind = checkChoice(config.snapshotKind ?? defaultSnapshotKind, 'snapshotKind', ['internal', 'external'])
    const poolSize = config.pool
    if (poolSize !== undefined && (!Number.isInteger(poolSize) || poolSize < 0 || poolSize > 16)) throw new SpecError(`must be a whole number from 0 to 16, got ${String(poolSize)}`, `machines.${name}.pool`)
  }

  /** The warm pool's size: 0 without snapshot rollback, else the config's, or once the first VM has shown its accelerator, the host's default; undefined before. */
  get poolSize(): number | undefined {
    if (this.rollback !== 'snapshot') return 0
    return this.config.pool ?? this.chosenPoolSize
  }

  /** A VM in the clean state, ready for one test. */
  async acquire(signal?: AbortSignal): Promise<Vm> {
    const options = { ...this.options, signal }
    if (!this.current) this.current = this.started ? await this.nextClean(undefined, options) : await this.first(options)
    else if (this.handedOut) this.current = await this.nextClean(this.current, options)
    this.started = true
    this.handedOut = true
    this.current.commands.length = 0
    return this.current
  }

  /** Takes the VM back after a test. With a pool the used VM goes back to it to be reloaded, or is retired at once. */
  release(vm: Vm): void {
    if (vm !== this.current || !this.pool) return
    this.current = undefined
    this.handBack(vm)
  }

  /** Leaves the VM a test used running for debugging (see Vm.keep); the next test gets a fresh one. */
  async keep(vm: Vm, reason: string): Promise<KeptVm> {
    if (vm === this.current) {
      this.current = undefined
      this.handedOut = false
    }
    this.pool?.forget(vm)
    return vm.keep(reason)
  }

  /** Destroys every VM this machine holds, in use or pooled. */
  async close(): Promise<void> {
    if (this.current) this.retire(this.current)
    this.current = undefined
    await this.pool?.close()
    await Promise.all(this.retiring)
  }

  private async first(options: StartOptions): Promise<Vm> {
    if (this.rollback === 'reboot') return this.bootAndSetUp(options)
    const { vm, entry, built } = await startFromGolden(this.recipe(), options)
    this.goldenBuilt = built
    this.goldenDir = entry.snapshotDir
    try {
      this.pool = this.makePool(vm)
      if (this.reloadsInPlace && !this.pool) await vm.snapshot(cleanTag)
    } catch (error) {
      await vm.destroy()
      throw error
    }
    this.pool?.fill()
    return vm
  }

  /** The pool is made once the first VM runs: the default size depends on its accelerator. */
  private makePool(first: Vm): WarmPool | undefined {
    const spec = resolveSpec(this.spec())
    this.chosenPoolSize = defaultPoolSize({ cores: availableParallelism(), accel: first.handle.accel, guestCpus: spec.cpus })
    const size = this.poolSize ?? 0
    if (this.rollback !== 'snapshot' || size === 0) return undefined
    return new WarmPool({
      size,
      memoryMiB: spec.memory,
      start: () => this.cleanClone(),
      recycle: this.reloadsInPlace ? (vm) => this.reload(vm) : undefined,
    })
  }

  private async nextClean(used: Vm | undefined, options: StartOptions): Promise<Vm> {
    if (this.rollback === 'none') {
      if (used && (await isAlive(used))) return used
    } else if (this.rollback === 'reboot') {
      if (used) this.retire(used)
      return this.bootAndSetUp(options)
    } else if (this.pool) {
      if (used) this.handBack(used)
      return (await this.pool.take().catch(() => undefined)) ?? this.clone(options)
    } else if (used && this.reloadsInPlace) {
      return this.reload(used, options)
    }
    if (used) this.retire(used)
    return this.cleanClone(options)
  }

  /** Snapshot rollback by reloading a VM's own internal snapshot, rather than by a fresh clone per test. */
  private get reloadsInPlace(): boolean {
    return this.rollback === 'snapshot' && this.snapshotKind === 'internal'
  }

  /** Back to the golden state in the same process; a VM that cannot be (stopped, or panicked mid-save) is replaced by a fresh clone. */
  private async reload(vm: Vm, options: StartOptions = this.options): Promise<Vm> {
    if (await isAlive(vm)) {
      try {
        await vm.restore(cleanTag, options)
        return vm
      } catch {
        // Replaced below.
      }
    }
    this.retire(vm)
    return this.cleanClone(options)
  }

  /** A clone that can be reloaded in place afterwards: it carries the golden state as an internal snapshot. */
  private async cleanClone(options: StartOptions = this.options): Promise<Vm> {
    const vm = await this.clone(options)
    if (!this.reloadsInPlace) return vm
    try {
      await vm.snapshot(cleanTag)
      return vm
    } catch (error) {
      this.retire(vm)
      throw error
    }
  }

  private handBack(vm: Vm): void {
    if (!this.pool?.takeBack(vm)) this.retire(vm)
  }

  /** A new VM from the golden snapshot; only called once `first` has found or built it. */
  private async clone(options: StartOptions = this.options): Promise<Vm> {
    if (!this.goldenDir) throw new Error(`vmharness: machine '${this.name}' cloned before its golden snapshot existed`)
    return Vm.start({ ...this.spec(), restoreFrom: this.goldenDir }, options)
  }

  private async bootAndSetUp(options: StartOptions): Promise<Vm> {
    const vm = await Vm.start(this.spec(), options)
    try {
      await this.config.setup?.(vm)
      return vm
    } catch (error) {
      await vm.destroy()
      throw error
    }
  }

  private retire(vm: Vm): void {
    const done = vm.destroy().catch(() => undefined)
    this.retiring.add(done)
    void done.then(() => this.retiring.delete(done))
  }

  private recipe(): GoldenRecipe {
    return { spec: this.spec(), setup: this.config.setup, setupKey: this.config.setupKey }
  }

  private spec(): VmSpec {
    const { setup: _setup, setupKey: _key, rollback: _rollback, pool: _pool, snapshotKind: _kind, ...spec } = this.config
    return { name: this.name, ...spec }
  }
}

async function isAlive(vm: Vm): Promise<boolean> {
  const state = await vm.state().catch(() => undefined)
  return state?.status === 'running' || state?.status === 'paused'
}

function checkChoice<T extends string>(value: T, field: string, choices: readonly T[]): T {
  if (!choices.includes(value)) throw new SpecError(`must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got '${String(value)}'`, field)
  return value
}
