import { availableParallelism } from 'node:os'
import { SpecError } from '../errors.js'
import type { SnapshotKind } from '../hypervisor/hypervisor.js'
import { defaultPoolSize, type PoolHost } from './pool-size.js'
import type { StartOptions } from './vm.js'
import { WarmPool, type Disposable } from './warm-pool.js'

/** How a machine (or a group of them) gets back to its clean state between tests. */
export type RollbackMode = 'snapshot' | 'reboot' | 'none'

// Measured with bench/clean-state.ts: reloading in the same process beats starting a clone, both
// in a test's wait without a pool and in the CPU a pool spends per clean VM.
export const defaultSnapshotKind: SnapshotKind = 'internal'

export interface RollbackChoice {
  rollback: RollbackMode
  snapshotKind: SnapshotKind
  pool: number | undefined
}

/** Checks the rollback words of a config; `field` prefixes the field names in errors. */
export function checkRollback(given: { rollback?: unknown; snapshotKind?: unknown; pool?: unknown }, field: string): RollbackChoice {
  const rollback = oneOf(given.rollback ?? 'snapshot', `${field}rollback`, ['snapshot', 'reboot', 'none'] as const)
  const snapshotKind = oneOf(given.snapshotKind ?? defaultSnapshotKind, `${field}snapshotKind`, ['internal', 'external'] as const)
  const pool = given.pool
  if (pool !== undefined && (typeof pool !== 'number' || !Number.isInteger(pool) || pool < 0 || pool > 16)) throw new SpecError(`must be a whole number from 0 to 16, got ${String(pool)}`, `${field}pool`)
  return { rollback, snapshotKind, pool: pool as number | undefined }
}

function oneOf<T extends string>(value: unknown, field: string, choices: readonly T[]): T {
  if (!choices.includes(value as T)) throw new SpecError(`must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got '${String(value)}'`, field)
  return value as T
}

/** What the golden snapshot gave the first test: the unit that booted or was cloned, and where the snapshot is. */
export interface GoldenStart<T> {
  unit: T
  goldenDir: string
  built: boolean
}

/**
 * The clean-state cycle shared by one machine (CleanMachine, a Vm per test) and a group of
 * machines on networks (CleanGroup, a GroupInstance per test): the golden snapshot on first use,
 * then for every test a unit in that state, by the rollback mode asked for, through a warm pool
 * of clean units when there is one. What a unit is and how it is started, saved and reloaded is
 * the subclass's.
 */
export abstract class CleanCycle<T extends Disposable> {
  private current: T | undefined
  private handedOut = false
  private started = false
  private pool: WarmPool<T> | undefined
  private chosenPoolSize: number | undefined
  private goldenDir: string | undefined
  private readonly retiring = new Set<Promise<void>>()
  readonly rollback: RollbackMode
  readonly snapshotKind: SnapshotKind
  /** Whether the golden snapshot was built here (rather than found in the cache). */
  goldenBuilt: boolean | undefined

  protected constructor(
    private readonly choice: RollbackChoice,
    protected readonly options: StartOptions,
  ) {
    this.rollback = choice.rollback
    this.snapshotKind = choice.snapshotKind
  }

  /** The golden snapshot's directory, once the first acquire has found or built it. */
  get goldenSnapshotDir(): string | undefined {
    return this.goldenDir
  }

  /** The warm pool's size: 0 without snapshot rollback, else the config's, or once the first unit has shown its accelerator, the host's default; undefined before. */
  get poolSize(): number | undefined {
    if (this.rollback !== 'snapshot') return 0
    return this.choice.pool ?? this.chosenPoolSize
  }

  /** A unit in the clean state, ready for one test. */
  async acquire(signal?: AbortSignal): Promise<T> {
    const options = { ...this.options, signal }
    // Not current while a new one is made: a failure then leaves no retired unit to hand out next time.
    const used = this.current
    this.current = undefined
    if (!used) this.current = this.started ? await this.nextClean(undefined, options) : await this.first(options)
    else this.current = this.handedOut ? await this.nextClean(used, options) : used
    this.started = true
    this.handedOut = true
    this.startRecord(this.current)
    return this.current
  }

  /** Takes the unit back after a test. With a pool it goes back to be reloaded, or is retired at once. */
  release(unit: T): void {
    if (unit !== this.current || !this.pool) return
    this.current = undefined
    this.handBack(unit)
  }

  /** Destroys every unit held, in use or pooled. */
  async close(): Promise<void> {
    if (this.current) this.retire(this.current)
    this.current = undefined
    await this.pool?.close()
    await Promise.all(this.retiring)
  }

  /** The unit a test used leaves this cycle (kept for debugging): the next test gets another. */
  protected giveUp(unit: T): void {
    if (unit === this.current) {
      this.current = undefined
      this.handedOut = false
    }
    this.pool?.forget(unit)
  }

  /** Finds or builds the golden snapshot; the unit it hands back is at exactly that state. */
  protected abstract startFromGolden(options: StartOptions): Promise<GoldenStart<T>>
  /** A new unit from the golden snapshot in `goldenDir`. */
  protected abstract cloneFrom(goldenDir: string, options: StartOptions): Promise<T>
  /** A freshly booted unit with its setup run (reboot rollback). */
  protected abstract bootAndSetUp(options: StartOptions): Promise<T>
  /** Saves the unit's state as its internal clean snapshot. */
  protected abstract saveClean(unit: T): Promise<void>
  /** Puts the unit back to its internal clean snapshot. */
  protected abstract restoreClean(unit: T, options: StartOptions): Promise<void>
  /** Whether the unit can still be used or reloaded (its VMs, and switches, alive). */
  protected abstract isUsable(unit: T): Promise<boolean>
  /** What the default pool size and the pool's memory check go by, once the first unit runs. */
  protected abstract poolDemand(first: T): { accel: PoolHost['accel']; guestCpus: number; memoryMiB: number }
  /** A new test begins on the unit: its command records start empty. */
  protected abstract startRecord(unit: T): void
  /** A name for messages. */
  protected abstract describe(): string

  private async first(options: StartOptions): Promise<T> {
    if (this.rollback === 'reboot') return this.bootAndSetUp(options)
    const { unit, goldenDir, built } = await this.startFromGolden(options)
    this.goldenBuilt = built
    this.goldenDir = goldenDir
    try {
      this.pool = this.makePool(unit)
      if (this.reloadsInPlace && !this.pool) await this.saveClean(unit)
    } catch (error) {
      await unit.destroy()
      throw error
    }
    this.pool?.fill()
    return unit
  }

  /** The pool is made once the first unit runs: the default size depends on its accelerator. */
  private makePool(first: T): WarmPool<T> | undefined {
    const demand = this.poolDemand(first)
    this.chosenPoolSize = defaultPoolSize({ cores: availableParallelism(), accel: demand.accel, guestCpus: demand.guestCpus })
    const size = this.poolSize ?? 0
    if (this.rollback !== 'snapshot' || size === 0) return undefined
    return new WarmPool<T>({
      size,
      memoryMiB: demand.memoryMiB,
      start: () => this.cleanClone(),
      recycle: this.reloadsInPlace ? (unit) => this.reload(unit) : undefined,
    })
  }

  private async nextClean(used: T | undefined, options: StartOptions): Promise<T> {
    if (this.rollback === 'none') {
      if (used && (await this.isUsable(used))) return used
    } else if (this.rollback === 'reboot') {
      if (used) this.retire(used)
      return this.bootAndSetUp(options)
    } else if (this.pool) {
      if (used) this.handBack(used)
      const taken = await this.pool.take().catch(() => undefined)
      if (taken && (await this.isUsable(taken))) return taken
      if (taken) this.retire(taken)
      return this.cleanClone(options)
    } else if (used && this.reloadsInPlace) {
      return this.reload(used, options)
    }
    if (used) this.retire(used)
    return this.cleanClone(options)
  }

  /** Snapshot rollback by reloading a unit's own internal snapshot, rather than by a fresh clone per test. */
  private get reloadsInPlace(): boolean {
    return this.rollback === 'snapshot' && this.snapshotKind === 'internal'
  }

  /** Back to the golden state in place; a unit that cannot be (stopped, panicked mid-save, a switch died) is replaced by a fresh clone. */
  private async reload(unit: T, options: StartOptions = this.options): Promise<T> {
    if (await this.isUsable(unit)) {
      try {
        await this.restoreClean(unit, options)
        return unit
      } catch {
        // Replaced below.
      }
    }
    this.retire(unit)
    return this.cleanClone(options)
  }

  /** A clone that can be reloaded in place afterwards: it carries the golden state as an internal snapshot. */
  private async cleanClone(options: StartOptions = this.options): Promise<T> {
    if (!this.goldenDir) throw new Error(`vmharness: ${this.describe()} cloned before its golden snapshot existed`)
    const unit = await this.cloneFrom(this.goldenDir, options)
    if (!this.reloadsInPlace) return unit
    try {
      await this.saveClean(unit)
      return unit
    } catch (error) {
      this.retire(unit)
      throw error
    }
  }

  private handBack(unit: T): void {
    if (!this.pool?.takeBack(unit)) this.retire(unit)
  }

  private retire(unit: T): void {
    const done = unit.destroy().catch(() => undefined)
    this.retiring.add(done)
    void done.then(() => this.retiring.delete(done))
  }
}
