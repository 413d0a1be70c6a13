import { execa } from 'execa'
import { discardKept, findKept, listKept } from '../hypervisor/keep/kept-vms.js'
import { locateRequired } from '../host/requirements.js'
import { keptMessage, sshCommand } from './kept-message.js'

/** `vmharness ssh <name|id> [command...]`: an interactive shell (or one command) in a kept VM. */
export async function sshIntoKept(args: string[]): Promise<number> {
  const [nameOrId, ...command] = args
  if (!nameOrId) {
    const kept = await listKept()
    process.stderr.write(kept.length ? `name a kept VM: ${kept.map((vm) => vm.name).join(', ')}\n` : 'no VM is kept; run a suite with VMHARNESS_KEEP=on-failure\n')
    return 2
  }
  const kept = await findKept(nameOrId)
  const ssh = await locateRequired('ssh-client')
  const [, ...options] = sshCommand(kept)
  const result = await execa(ssh, [...(command.length ? [] : ['-t']), ...options, ...command], { stdio: 'inherit', reject: false })
  return result.exitCode ?? 1
}

/** `vmharness kept [--stop <name|id> | --stop-all]`: lists kept VMs, or stops them. */
export async function keptCommand(args: string[], write: (text: string) => void): Promise<number> {
  if (args[0] === '--stop' && args[1]) {
    const kept = await findKept(args[1])
    await discardKept(kept)
    write(`stopped ${kept.name} (${kept.id})\n`)
    return 0
  }
  if (args[0] === '--stop-all') {
    for (const kept of await listKept()) {
      await discardKept(kept)
      write(`stopped ${kept.name} (${kept.id})\n`)
    }
    return 0
  }
  if (args.length > 0) {
    write(`usage: vmharness kept [--stop <name|id> | --stop-all]\n`)
    return 2
  }
  const kept = await listKept()
  if (kept.length === 0) write('no VM is kept (VMHARNESS_KEEP=on-failure keeps a failed test\'s VM)\n')
  for (const vm of kept) write(keptMessage(vm) + '\n')
  return 0
}
