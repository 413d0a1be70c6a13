import type { KeptVm } from '../hypervisor/keep/kept-vms.js'
import type { SnapshotKind } from '../hypervisor/hypervisor.js'
import { resolveSpec, type VmSpec } from '../spec/vm-spec.js'
import { checkRollback, CleanCycle, type GoldenStart, type RollbackMode } from './clean-cycle.js'
import { startFromGolden, type GoldenRecipe, type SetupFunction } from './golden.js'
import { Vm, type StartOptions } from './vm.js'

export { defaultSnapshotKind, type RollbackMode } from './clean-cycle.js'

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

const cleanTag = 'clean'

/**
 * One named machine of a test file: hands out a VM in its clean state for each test and takes
 * it back afterwards. Works without vitest (the fixtures wrap it).
 */
export class CleanMachine extends CleanCycle<Vm> {
  constructor(
    readonly name: string,
    private readonly config: MachineConfig,
    options: StartOptions = {},
  ) {
    super(checkRollback(config, `machines.${name}.`), options)
  }

  /** Leaves the VM a test used running for debugging (see Vm.keep); the next test gets a fresh one. */
  async keep(vm: Vm, reason: string): Promise<KeptVm> {
    this.giveUp(vm)
    return vm.keep(reason)
  }

  protected async startFromGolden(options: StartOptions): Promise<GoldenStart<Vm>> {
    const { vm, entry, built } = await startFromGolden(this.recipe(), options)
    return { unit: vm, goldenDir: entry.snapshotDir, built }
  }

  protected cloneFrom(goldenDir: string, options: StartOptions): Promise<Vm> {
    return Vm.start({ ...this.spec(), restoreFrom: goldenDir }, options)
  }

  protected async bootAndSetUp(options: StartOptions): Promise<Vm> {
    const vm = await Vm.start(this.spec(), options)
    try {
      await this.config.setup?.(vm)
      return vm
    } catch (error) {
      await vm.destroy()
      throw error
    }
  }

  protected async saveClean(vm: Vm): Promise<void> {
    await vm.snapshot(cleanTag)
  }

  protected async restoreClean(vm: Vm, options: StartOptions): Promise<void> {
    await vm.restore(cleanTag, options)
  }

  protected async isUsable(vm: Vm): Promise<boolean> {
    const state = await vm.state().catch(() => undefined)
    return state?.status === 'running' || state?.status === 'paused'
  }

  protected poolDemand(first: Vm): { accel: Vm['handle']['accel']; guestCpus: number; memoryMiB: number } {
    const spec = resolveSpec(this.spec())
    return { accel: first.handle.accel, guestCpus: spec.cpus, memoryMiB: spec.memory }
  }

  protected startRecord(vm: Vm): void {
    vm.commands.length = 0
  }

  protected describe(): string {
    return `machine '${this.name}'`
  }

  private recipe(): GoldenRecipe {
    return { spec: this.spec(), setup: this.config.setup, setupKey: this.config.setupKey }
  }

  private spec(): VmSpec {
    const { setup: _setup, setupKey: _key, rollback: _rollback, pool: _pool, snapshotKind: _kind, ...spec } = this.config
    return { name: this.name, ...spec }
  }
}
