import { SnapshotError } from '../errors.js'
import { ContentHash } from '../common/content-hash.js'
import { harnessCodeDigest } from '../common/harness-code.js'
import { harnessVersion } from '../common/harness-version.js'
import { memoizedFileSha256 } from '../host/file-digest.js'
import { qemuIdentity } from '../host/qemu-identity.js'
import { locateRequired } from '../host/requirements.js'
import { libvirtIdentity } from '../hypervisor/libvirt/libvirt-identity.js'
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

/**
 * The golden snapshot of a recipe: from the cache when an entry with the same key exists (see
 * GoldenKeyInputs: harness code, hypervisor binary, image contents and kernel line, spec, setup
 * source and setupKey), else booted, set up and saved now; and a VM at exactly that state (the
 * builder, or a clone). A cached snapshot that cannot be loaded (damaged, or saved by another
 * QEMU) is discarded and built again once.
 */
export async function startFromGolden(recipe: GoldenRecipe, options: StartOptions = {}): Promise<{ vm: Vm; entry: GoldenEntry; built: boolean }> {
  const resolved = resolveSpec(recipe.spec)
  const backend = options.hypervisor?.name ?? (await chooseBackend(resolved.backend))
  const key = await goldenKey(resolved, backend, recipe, options)
  const description = { spec: recipe.spec, backend, setupKey: recipe.setupKey, version: harnessVersion() }
  const { unit, entry, built } = await unitFromGolden(
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
    (snapshotDir) => Vm.start({ ...recipe.spec, restoreFrom: snapshotDir }, options),
    options,
  )
  return { vm: unit, entry, built }
}

/**
 * The golden entry `key` and a unit (a VM, or a group of them) at its state: the builder when
 * `build` made it now, else one started by `cloneFrom` from the cached entry. An entry that
 * cannot be loaded is discarded and built again once.
 */
export async function unitFromGolden<T>(
  key: string,
  description: Record<string, unknown>,
  build: (snapshotDir: string) => Promise<T>,
  cloneFrom: (snapshotDir: string) => Promise<T>,
  options: StartOptions,
): Promise<{ unit: T; entry: GoldenEntry; built: boolean }> {
  for (let attempt = 1; ; attempt++) {
    const { entry, built } = await ensureGolden(key, description, build, options.signal)
    if (built !== undefined) return { unit: built, entry, built: true }
    try {
      return { unit: await cloneFrom(entry.snapshotDir), entry, built: false }
    } catch (error) {
      if (!(error instanceof SnapshotError) || attempt > 1) throw error
      options.onProgress?.(`golden snapshot ${entry.key} is unusable (${error.message.split('\n')[0]}); building it again`)
      await discardGolden(entry.key)
    }
  }
}

/** The golden key of one recipe (a group's key is made of its members'). */
export async function recipeGoldenKey(recipe: GoldenRecipe, options: StartOptions = {}): Promise<string> {
  const resolved = resolveSpec(recipe.spec)
  const backend = options.hypervisor?.name ?? (await chooseBackend(resolved.backend))
  return goldenKey(resolved, backend, recipe, options)
}

/** Everything a golden snapshot's saved state depends on: a change to any of them gives another key. */
export interface GoldenKeyInputs {
  /** Content hash of the running harness code and its image recipes (harnessCodeDigest). */
  harnessCode: string
  backend: string
  /** The resolved spec; its name, restoreFrom and boot timeout are left out (they do not shape the state). */
  spec: ResolvedSpec
  /** The setup function's source text. */
  setupSource: string
  setupKey: string
  /** What identifies the hypervisor binary (qemuIdentity); empty for the no-op backend. */
  hypervisorBinary: string
  /** sha256 of each image file that exists: disk, kernel, initrd. */
  imageFiles: { disk?: string; kernel?: string; initrd?: string }
  /** The image's own kernel line (the spec's additions are in the spec). */
  imageKernelArgs: string[]
}

/** The golden snapshot's cache key: a short sha256 over all its inputs. */
export function goldenKeyOf(inputs: GoldenKeyInputs): string {
  const hash = new ContentHash()
    .text('harnessCode', inputs.harnessCode)
    .text('backend', inputs.backend)
    .text('spec', JSON.stringify({ ...inputs.spec, name: undefined, restoreFrom: undefined, bootTimeoutMs: undefined, networks: inputs.spec.networks.map((nic) => ({ ...nic, switchSocket: undefined })) }))
    .text('setup', inputs.setupSource)
    .text('setupKey', inputs.setupKey)
    .text('hypervisorBinary', inputs.hypervisorBinary)
  for (const part of ['disk', 'kernel', 'initrd'] as const) hash.text(part, inputs.imageFiles[part] ?? '')
  // How the image boots (its kernel line) shapes the saved state as much as its files do.
  return hash.text('imageKernelArgs', inputs.imageKernelArgs.join(' ')).digest()
}

async function goldenKey(spec: ResolvedSpec, backend: string, recipe: GoldenRecipe, options: StartOptions): Promise<string> {
  const inputs: GoldenKeyInputs = {
    harnessCode: await harnessCodeDigest(),
    backend,
    spec,
    setupSource: recipe.setup ? recipe.setup.toString() : '',
    setupKey: recipe.setupKey ?? '',
    hypervisorBinary: '',
    imageFiles: {},
    imageKernelArgs: [],
  }
  if (backend !== 'noop') {
    const image = await resolveImage(spec, options)
    for (const part of ['disk', 'kernel', 'initrd'] as const) {
      const path = image[part]
      if (path) inputs.imageFiles[part] = await memoizedFileSha256(path)
    }
    inputs.imageKernelArgs = image.kernelArgs
    if (backend === 'qemu') inputs.hypervisorBinary = await qemuIdentity(await locateRequired('qemu-system'))
    if (backend === 'libvirt') inputs.hypervisorBinary = await libvirtIdentity(spec)
  }
  return goldenKeyOf(inputs)
}
