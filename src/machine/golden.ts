import { stat } from 'node:fs/promises'
import { SnapshotError } from '../errors.js'
import { ContentHash } from '../common/content-hash.js'
import { harnessVersion } from '../common/harness-version.js'
import { chooseBackend } from '../hypervisor/router.js'
import { resolveImage } from '../images/resolve-image.js'
import { discardGolden, ensureGolden, type GoldenEntry } from '../snapshots/golden-store.js'
import { resolveSpec, type ResolvedSpec, type VmSpec } from '../spec/vm-spec.js'
import { Vm, type StartOptions } from './vm.js'

export type SetupFunction = (vm: Vm) => unknown

export interface GoldenRecipe {
  spec: VmSpec
  /** Runs once on a freshly booted VM; the state it leaves is what every test starts from. */
  setup?: SetupFunction
  /** Joined to the key: the setup's source text is hashed, not the values it closes over. */
  setupKey?: string
}

export interface GoldenResult {
  entry: GoldenEntry
  /** The VM that built the snapshot, still running at exactly the saved state; absent when the cache had it. */
  builder: Vm | undefined
}

/**
 * The golden snapshot of a recipe: from the cache when an entry for the same image, spec, setup
 * and harness version exists, else booted, set up and saved now (the builder VM is handed back).
 */
export async function goldenSnapshot(recipe: GoldenRecipe, options: StartOptions = {}): Promise<GoldenResult> {
  const resolved = resolveSpec(recipe.spec)
  const backend = options.hypervisor?.name ?? (await chooseBackend(resolved.backend))
  const key = await goldenKey(resolved, backend, recipe, options)
  const description = { spec: recipe.spec, backend, setupKey: recipe.setupKey, version: harnessVersion() }
  const { entry, built } = await ensureGolden(
    key,
    description,
    async (snapshotDir) => {
      options.onProgress?.(`golden snapshot for '${resolved.name}': booting and running setup`)
      const vm = await Vm.start(recipe.spec, options)
      try {
        await recipe.setup?.(vm)
        await vm.snapshot('golden', { kind: 'external', dir: snapshotDir })
        return vm
      } catch (error) {
        await vm.destroy()
        throw error
      }
    },
    options.signal,
  )
  return { entry, builder: built }
}

/**
 * Starts a clone of the golden snapshot. A cached snapshot that cannot be loaded (damaged, or
 * saved by another QEMU) is discarded and built again once.
 */
export async function startFromGolden(recipe: GoldenRecipe, options: StartOptions = {}): Promise<{ vm: Vm; entry: GoldenEntry; built: boolean }> {
  for (let attempt = 1; ; attempt++) {
    const { entry, builder } = await goldenSnapshot(recipe, options)
    if (builder) return { vm: builder, entry, built: true }
    try {
      return { vm: await Vm.start({ ...recipe.spec, restoreFrom: entry.snapshotDir }, options), entry, built: false }
    } catch (error) {
      if (!(error instanceof SnapshotError) || attempt > 1) throw error
      options.onProgress?.(`golden snapshot ${entry.key} is unusable (${error.message.split('\n')[0]}); building it again`)
      await discardGolden(entry.key)
    }
  }
}

async function goldenKey(spec: ResolvedSpec, backend: string, recipe: GoldenRecipe, options: StartOptions): Promise<string> {
  const hash = new ContentHash()
    .text('version', harnessVersion())
    .text('backend', backend)
    .text('spec', JSON.stringify({ ...spec, name: undefined, restoreFrom: undefined, bootTimeoutMs: undefined }))
    .text('setup', recipe.setup ? recipe.setup.toString() : '')
    .text('setupKey', recipe.setupKey ?? '')
  if (backend !== 'noop') {
    const image = await resolveImage(spec, options)
    for (const [part, path] of Object.entries({ disk: image.disk, kernel: image.kernel, initrd: image.initrd })) {
      if (!path) continue
      const info = await stat(path)
      hash.text(part, `${path}\0${info.size}\0${info.mtimeMs}`)
    }
    // How the image boots (its kernel line) shapes the saved state as much as its files do.
    hash.text('imageKernelArgs', image.kernelArgs.join(' '))
  }
  return hash.digest()
}
