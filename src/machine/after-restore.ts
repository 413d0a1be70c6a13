import { HypervisorError } from '../errors.js'
import type { Hypervisor, VmHandle } from '../hypervisor/hypervisor.js'
import { SshSession } from '../ssh/ssh-session.js'

const reconnectTimeoutMs = { kvm: 15_000, tcg: 60_000, none: 5_000 }

/**
 * A restored guest is already up: its sshd listens, so there is no marker to wait for. Its
 * TCP connections died with the old state, and its clock stands at the moment of the save,
 * so both are renewed before anyone uses the VM.
 */
export async function reconnectAfterRestore(hypervisor: Hypervisor, vm: VmHandle, signal?: AbortSignal): Promise<SshSession> {
  if (!vm.ssh) throw new HypervisorError('has no SSH endpoint to reconnect to', { vm: vm.name })
  let session: SshSession | undefined
  try {
    session = await SshSession.connect(vm.ssh, { timeoutMs: reconnectTimeoutMs[vm.accel], signal })
    await setGuestClock(session, vm.name)
    return session
  } catch (error) {
    session?.close()
    if (signal?.aborted) throw error
    throw new HypervisorError(`did not answer after the restore: ${(error as Error).message}`, { vm: vm.name, cause: error, consoleTail: await hypervisor.consoleTail(vm, 20) })
  }
}

/**
 * Sets the guest clock to the host's, rounded to the second (busybox's `date` takes no fractions),
 * so within half a second plus one command's latency. `exec` spares the shell a fork: after a
 * restore every fork is slow, the guest's translated code being gone.
 */
export async function setGuestClock(session: SshSession, vmName: string): Promise<void> {
  const command = `exec date -u -s @${Math.round(Date.now() / 1000)} >/dev/null`
  const result = await session.exec(command, { timeoutMs: 10_000 })
  if (result.exitCode !== 0) throw new HypervisorError(`could not set the guest clock: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, { vm: vmName })
}
