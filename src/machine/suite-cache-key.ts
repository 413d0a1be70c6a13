import { ContentHash } from '../common/content-hash.js'
import { harnessCodeDigest } from '../common/harness-code.js'
import { memoizedFileSha256 } from '../host/file-digest.js'
import { qemuIdentity } from '../host/qemu-identity.js'
import { locateRequired } from '../host/requirements.js'
import { libvirtIdentity } from '../hypervisor/libvirt/libvirt-identity.js'
import { chooseBackend } from '../hypervisor/router.js'
import { debianImageKey } from '../images/debian-image.js'
import { tinyImageKey } from '../images/tiny-image.js'
import { SpecError } from '../errors.js'
import { resolveSpec, type ResolvedSpec } from '../spec/vm-spec.js'
import type { MachineConfig } from './clean-machine.js'
import { goldenKeyOf } from './golden.js'
import { topologyOf } from './group-topology.js'

/** What a suite declares: the `machines` (and `networks`) given to one vmTest. */
export interface MachineDeclarations {
  machines: Record<string, MachineConfig>
  networks?: Record<string, string[]>
}

export interface SuiteCacheKey {
  key: string
  /** One line per machine: its name, image and the key of what it needs. */
  machines: string[]
}

/**
 * A key for a CI cache of the vmharness cache, computed before the cache is restored (so from
 * nothing it holds): it changes exactly when the golden key of one of the machines would change,
 * with each built image's recipe key (its inputs: the host files it is built from, the recipe,
 * the package list and mirror) standing in for the image's files, which exist only after a build.
 * The inputs: the harness code, the backend, the hypervisor binary (sha256 and version), each
 * machine's spec, setup source and setupKey, the image recipe keys (or the sha256 of a user's
 * own image files) and the networks between machines.
 */
export async function suiteCacheKey(suites: MachineDeclarations[]): Promise<SuiteCacheKey> {
  const lines: string[] = []
  const parts: string[] = []
  const harnessCode = await harnessCodeDigest()
  for (const suite of suites) {
    const topology = topologyOf(suite.machines, suite.networks)
    parts.push(`networks ${JSON.stringify(topology.groups.map((group) => group.networks))}`)
    for (const [name, config] of Object.entries(suite.machines)) {
      const { setup, setupKey, rollback: _rollback, pool: _pool, snapshotKind: _kind, ...spec } = config
      const resolved = resolveSpec({ ...spec, name })
      const backend = await chooseBackend(resolved.backend)
      const machineKey = goldenKeyOf({
        harnessCode,
        backend,
        spec: resolved,
        setupSource: setup ? setup.toString() : '',
        setupKey: setupKey ?? '',
        hypervisorBinary: await hypervisorIdentity(backend, resolved),
        imageFiles: backend === 'noop' ? {} : await imageRecipe(resolved),
        imageKernelArgs: [],
      })
      lines.push(`${name} ${describeImage(resolved)} ${machineKey}`)
    }
  }
  const hash = new ContentHash().text('format', '1')
  // A machine's name is not in its golden key; the networks (which name machines) are.
  for (const part of [...lines.map((line) => line.slice(line.indexOf(' ') + 1)), ...parts].sort()) hash.text('part', part)
  return { key: hash.digest(), machines: lines }
}

async function hypervisorIdentity(backend: string, spec: ResolvedSpec): Promise<string> {
  if (backend === 'qemu') return qemuIdentity(await locateRequired('qemu-system'))
  if (backend === 'libvirt') return libvirtIdentity(spec)
  return ''
}

/** What decides an image's files: a built image's recipe key, or the sha256 of a user's own files. */
async function imageRecipe(spec: ResolvedSpec): Promise<{ disk?: string; kernel?: string; initrd?: string }> {
  const image = spec.image
  if (typeof image === 'string' || !('disk' in image)) {
    const name = typeof image === 'string' ? image : image.name
    if (name === 'tiny') return { disk: `tiny recipe ${await tinyImageKey(spec.kernel)}` }
    if (name === 'debian') return { disk: `debian recipe ${await debianImageKey({ packages: typeof image === 'string' ? [] : image.packages })}` }
    throw new SpecError(`unknown image '${name}'`, 'image')
  }
  const files: { disk?: string; kernel?: string; initrd?: string } = {}
  for (const part of ['disk', 'kernel', 'initrd'] as const) {
    const path = image[part]
    if (path) files[part] = await memoizedFileSha256(path)
  }
  return files
}

function describeImage(spec: ResolvedSpec): string {
  const image = spec.image
  if (typeof image === 'string') return image
  return 'disk' in image ? image.disk : image.name
}
