import { HypervisorError } from '../../errors.js'
import type { VmHandle } from '../hypervisor.js'
import { recordKept, type KeptVm } from '../keep/kept-vms.js'
import type { QemuVm } from './qemu-vm.js'

/**
 * Moves a running VM into the kept area and lets go of its process, so that it outlives this
 * one; only a VM started detached (VMHARNESS_KEEP=on-failure) can be kept.
 */
export async function keepRunning(vm: VmHandle, record: QemuVm, reason: string): Promise<KeptVm> {
  const process = record.process
  if (!process || process.exitInfo) throw new HypervisorError('cannot be kept: it is not running', { vm: vm.name })
  if (!process.detached) throw new HypervisorError('cannot be kept: it was started without VMHARNESS_KEEP=on-failure, so it dies with this process', { vm: vm.name })
  const kept = await recordKept({ name: vm.name, id: vm.id, vmDir: record.dir, pid: process.pid, sshPort: record.ssh.port, sshUser: record.ssh.user, privateKey: record.ssh.privateKey, hostKey: record.ssh.hostKey, reason })
  record.qmp?.close()
  process.unref()
  return kept
}
