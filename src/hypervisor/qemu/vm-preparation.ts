import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { acceleratorVerdict, chooseAccelerator } from '../../host/accelerator.js'
import { findGuestKernel } from '../../host/guest-kernel.js'
import { runDir } from '../../host/run-dir.js'
import { hostTscKhz } from '../../host/tsc-frequency.js'
import { hostnameFor, writeSeedIso, type SeedContents } from '../../images/nocloud-seed.js'
import { ipv4PrefixLength, ipv6PrefixLength } from '../../network/addressing.js'
import { resolveImage } from '../../images/resolve-image.js'
import type { ResolvedSpec } from '../../spec/vm-spec.js'
import { generateKeyPair, runClientKey } from '../../ssh/keys.js'
import type { PrepareOptions, SshEndpoint, VmHandle } from '../hypervisor.js'
import { createOverlay } from './disk-overlays.js'
import type { QemuHostTools } from './host-tools.js'
import { loadOnNextLaunch } from './incoming-state.js'
import type { QemuLaunch, QemuNetworkNic } from './qemu-argv.js'
import { newQemuVm, type QemuVm } from './qemu-vm.js'
import { assertLaunchFits, readSavedState } from './saved-state.js'

export interface PreparedVm {
  record: QemuVm
  handle: VmHandle
}

/** A VM that boots its image: its own overlay, a seed with the run's key and a fresh host key, and its launch. */
export async function prepareBoot(spec: ResolvedSpec, options: PrepareOptions, tools: QemuHostTools): Promise<PreparedVm> {
  const image = await resolveImage(spec, options)
  const accel = await chooseAccelerator(spec.accel, async () => acceleratorVerdict({ qemu: tools.qemu, kernel: image.kernel ?? (await findGuestKernel()) }))
  const id = randomBytes(4).toString('hex')
  const dir = await (await runDir()).vmDir(id)
  try {
    const overlay = join(dir, 'disk-0.qcow2')
    await createOverlay(tools.qemuImg, image.disk, overlay)
    const clientKey = await runClientKey()
    const hostKey = generateKeyPair(`vmharness-host-${id}`)
    const seedIso = join(dir, 'seed.iso')
    await writeSeedIso(seedIso, { instanceId: `vmharness-${id}`, hostname: hostnameFor(spec.name), authorizedKeys: [clientKey.publicKey], hostKey, ...seedNetworks(spec) })
    const launch = launchIn(dir, {
      accel,
      machine: spec.machine,
      cpuModel: spec.cpuModel,
      memoryMiB: spec.memory,
      cpus: spec.cpus,
      kernel: image.kernel,
      initrd: image.initrd,
      kernelArgs: [...image.kernelArgs, ...machineKernelArgs(spec, accel), ...spec.kernelArgs],
      disk: overlay,
      seedIso,
      diskIo: tools.diskIo,
      networks: nicsOf(spec),
      outsideAccess: spec.outsideAccess,
    })
    const ssh: SshEndpoint = { host: '127.0.0.1', port: 0, user: image.sshUser, privateKey: clientKey.privateKey, hostKey: hostKey.publicKey }
    return newQemuVm(id, spec, { dir, launch, ssh, diskBacking: image.disk }, { readyMarker: image.readyMarker, failureMarker: image.failureMarker, readyCommand: image.readyCommand })
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

/** A VM that starts from an external snapshot: its own overlay over the frozen disk, the saved devices and keys. */
export async function prepareClone(spec: ResolvedSpec, from: string, hostTools: () => Promise<QemuHostTools>): Promise<PreparedVm> {
  const saved = await readSavedState(from)
  const accel = spec.accel === 'auto' ? saved.meta.launch.accel : spec.accel
  // A clone keeps its NICs and addresses but joins the switches its spec names: never its original's.
  const wanted = { ...saved.meta.launch, accel, machine: spec.machine, cpuModel: spec.cpuModel, memoryMiB: spec.memory, cpus: spec.cpus, networks: nicsOf(spec), outsideAccess: spec.outsideAccess }
  assertLaunchFits(saved.meta, wanted, saved.meta.hasSeed)
  const tools = await hostTools()
  const id = randomBytes(4).toString('hex')
  const dir = await (await runDir()).vmDir(id)
  const launch = launchIn(dir, { ...wanted, disk: '', seedIso: undefined })
  const ssh: SshEndpoint = { host: '127.0.0.1', port: 0, user: saved.meta.ssh.user, privateKey: saved.clientKey, hostKey: saved.meta.ssh.hostKey }
  const prepared = newQemuVm(id, spec, { dir, launch, ssh, diskBacking: '' }, { readyMarker: saved.meta.readyMarker, failureMarker: saved.meta.failureMarker, restoredFrom: from })
  try {
    await loadOnNextLaunch(prepared.record, saved, tools.qemuImg)
    return prepared
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

function nicsOf(spec: ResolvedSpec): QemuNetworkNic[] | undefined {
  if (spec.networks.length === 0) return undefined
  return spec.networks.map(({ index, node, mac, switchSocket }) => ({ index, node, mac, switchSocket }))
}

/** The guest's addresses on each network and the names of the machines it shares one with. */
function seedNetworks(spec: ResolvedSpec): Pick<SeedContents, 'networks' | 'hosts'> {
  if (spec.networks.length === 0) return {}
  const hosts = new Map<string, string>()
  for (const attachment of spec.networks) {
    for (const host of attachment.hosts) {
      hosts.set(host.ipv4, hostnameFor(host.name))
      hosts.set(host.ipv6, hostnameFor(host.name))
    }
  }
  return {
    networks: spec.networks.map(({ mac, ipv4, ipv6 }) => ({ mac, ipv4: `${ipv4}/${ipv4PrefixLength}`, ipv6: `${ipv6}/${ipv6PrefixLength}` })),
    hosts: [...hosts].map(([address, name]) => ({ address, name })),
  }
}

/** The launch with its sockets and console log in the VM directory; the SSH port is chosen at start. */
function launchIn(dir: string, parts: Omit<QemuLaunch, 'sshHostPort' | 'qmpSocket' | 'consoleSocket' | 'consoleLog'>): QemuLaunch {
  return { ...parts, sshHostPort: 0, qmpSocket: join(dir, 'qmp.sock'), consoleSocket: join(dir, 'console.sock'), consoleLog: join(dir, 'console.log') }
}

/**
 * Under TCG: microvm hangs in some boots while calibrating the TSC unless told its frequency. And
 * the kernel's clocksource watchdog marks TCG's TSC unstable and falls back to jiffies, which lose
 * ticks whenever the vCPU thread falls behind: the guest clock then lost 40–95 ms a second
 * (measured). TCG's TSC follows the host's while the VM runs, so it is kept as the clocksource.
 */
function machineKernelArgs(spec: ResolvedSpec, accel: 'kvm' | 'tcg'): string[] {
  if (accel !== 'tcg') return []
  return spec.machine === 'microvm' ? [`tsc_early_khz=${hostTscKhz()}`, 'tsc=reliable'] : ['tsc=reliable']
}
