import { HypervisorError } from '../errors.js'
import type { Hypervisor, VmHandle } from '../hypervisor/hypervisor.js'
import { SshSession } from '../ssh/ssh-session.js'
import { refreshGuest } from './guest-refresh.js'

const reconnectTimeoutMs = { kvm: 15_000, tcg: 60_000, none: 5_000 }

/**
 * A restored guest is already up: its sshd listens, so there is no marker to wait for. Its
 * TCP connections died with the old state, its clock stands at the moment of the save, and its
 * RNG would repeat what every other restore of the same state produces: all three are renewed
 * before anyone uses the VM.
 */
export async function reconnectAfterRestore(hypervisor: Hypervisor, vm: VmHandle, signal?: AbortSignal): Promise<SshSession> {
  if (!vm.ssh) throw new HypervisorError('has no SSH endpoint to reconnect to', { vm: vm.name })
  let session: SshSession | undefined
  try {
    session = await SshSession.connect(vm.ssh, { timeoutMs: reconnectTimeoutMs[vm.accel], signal })
    await refreshGuest(session, vm.name)
    return session
  } catch (error) {
    session?.close()
    if (signal?.aborted) throw error
    throw new HypervisorError(`did not answer after the restore: ${(error as Error).message}`, { vm: vm.name, cause: error, consoleTail: await hypervisor.consoleTail(vm, 20) })
  }
}
