import { BootTimeoutError, HypervisorError, isVmHarnessError } from '../errors.js'
import { describeExit, type Hypervisor, type VmHandle } from '../hypervisor/hypervisor.js'
import { SshSession, type ExecResult, type SshEndpoint } from '../ssh/ssh-session.js'
import { waitForConsoleText } from './console-watch.js'

export const defaultBootTimeoutMs = { kvm: 30_000, tcg: 120_000, none: 5_000 }

/** Why an image's ready command says the boot failed (its output, or how it ended), or undefined when it exited 0. */
export function readyCommandFailure(result: ExecResult): string | undefined {
  if (result.exitCode === 0) return undefined
  const ending = result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`
  const output = `${result.stdout}${result.stderr}`.trim().split('\n').slice(-40).join('\n')
  return output ? `${output}\n(the ready command ended with ${ending})` : `the ready command ended with ${ending} and printed nothing`
}

/**
 * Waits until the guest answers SSH: first its console ready marker (cheap, when the image has
 * one), then an SSH session. Fails early if the VM process ends, and at the deadline with the
 * last stage reached and the console tail.
 */
export async function waitForBoot(
  hypervisor: Hypervisor,
  vm: VmHandle,
  target: SshEndpoint,
  options: { timeoutMs: number; signal?: AbortSignal; onProgress?: (line: string) => void },
): Promise<SshSession> {
  let stage = 'process started'
  const started = Date.now()
  const ticker = options.onProgress ? setInterval(() => options.onProgress?.(`booting '${vm.name}' under ${vm.accel.toUpperCase()}: ${stage} (${Math.round((Date.now() - started) / 1000)} s)`), 5_000) : undefined
  const deadline = new AbortController()
  const timer = setTimeout(() => deadline.abort(new Error('boot deadline')), options.timeoutMs)
  const signal = options.signal ? AbortSignal.any([options.signal, deadline.signal]) : deadline.signal
  const processEnded = vm.exited.then(async (info) => {
    throw new HypervisorError(`the VM process ended during boot (${describeExit(info, 5)})`, { vm: vm.name, consoleTail: await hypervisor.consoleTail(vm, 20) })
  })
  try {
    const ready = async () => {
      const endpoint = hypervisor.consoleEndpoint(vm)
      if (vm.readyMarker && endpoint.kind === 'unix-socket') {
        stage = 'waiting for the console ready marker'
        const markers = vm.failureMarker ? [vm.readyMarker, vm.failureMarker] : [vm.readyMarker]
        const seen = await waitForConsoleText(endpoint.logPath, markers, { signal })
        if (seen.marker === vm.failureMarker) {
          throw new HypervisorError(`the guest reported that it cannot become ready: ${seen.rest}`, { vm: vm.name, consoleTail: await hypervisor.consoleTail(vm, 20) })
        }
        stage = 'console ready marker seen, connecting SSH'
      } else {
        stage = 'connecting SSH'
      }
      const session = await SshSession.connect(target, { timeoutMs: Math.max(1, options.timeoutMs), signal })
      if (vm.readyCommand) {
        stage = 'SSH connected, waiting for the guest to finish booting'
        try {
          const failure = readyCommandFailure(await session.exec(vm.readyCommand, { signal }))
          if (failure) throw new HypervisorError(`the guest finished booting with an error: ${failure}`, { vm: vm.name, consoleTail: await hypervisor.consoleTail(vm, 20) })
        } catch (error) {
          session.close()
          throw error
        }
      }
      return session
    }
    return await Promise.race([ready(), processEnded])
  } catch (error) {
    if (options.signal?.aborted) throw error
    if (deadline.signal.aborted) {
      throw new BootTimeoutError(stage, options.timeoutMs, {
        vm: vm.name,
        cause: error,
        consoleTail: await hypervisor.consoleTail(vm, 20),
      })
    }
    if (isVmHarnessError(error)) throw error
    throw new HypervisorError(`boot failed at stage '${stage}': ${(error as Error).message}`, { vm: vm.name, cause: error, consoleTail: await hypervisor.consoleTail(vm, 20) })
  } finally {
    clearInterval(ticker)
    clearTimeout(timer)
    processEnded.catch(() => undefined)
  }
}
