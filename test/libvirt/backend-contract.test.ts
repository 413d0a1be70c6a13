import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { runDir } from '../../src/host/run-dir.js'
import type { LibvirtHypervisor } from '../../src/hypervisor/libvirt/libvirt-hypervisor.js'
import { hypervisorFor } from '../../src/hypervisor/router.js'
import type { VmHandle } from '../../src/hypervisor/hypervisor.js'
import { backendContract } from '../contract/backend-contract.js'
import { libvirtObjectsNamed, sandbox, sandboxMissing } from '../helpers/libvirt-sandbox.js'

/** What a destroyed libvirt VM could leave: its domain, network and volumes on the host, its local directory. */
async function leftovers(handle: VmHandle): Promise<string[]> {
  const vmDir = join((await runDir()).path, `vm-${handle.id}`)
  return [...(await libvirtObjectsNamed(`vmh-`)).filter((name) => name.includes(handle.id)), ...(existsSync(vmDir) ? [vmDir] : [])]
}

const libvirt = () => hypervisorFor('libvirt') as LibvirtHypervisor

// The libvirt backend against the contract every backend meets, on this machine's daemon...
backendContract({
  label: 'libvirt on this host',
  hypervisor: libvirt,
  spec: { image: 'tiny', libvirtUri: sandbox?.localUri },
  leftovers,
  unavailable: sandboxMissing,
})

// ...and on the same daemon as a remote host, through its sshd (qemu+ssh://, guests reached through the host).
backendContract({
  label: 'libvirt through qemu+ssh://',
  hypervisor: libvirt,
  spec: { image: 'tiny', libvirtUri: sandbox?.remoteUri },
  leftovers,
  unavailable: sandboxMissing,
})
