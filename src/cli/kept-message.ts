import { join } from 'node:path'
import type { KeptVm } from '../hypervisor/keep/kept-vms.js'

/** What a person needs to reach a kept VM, printed when a test's VM is kept and by `vmharness kept`. */
export function keptMessage(kept: KeptVm): string {
  return [
    `vmharness: kept '${kept.name}' (${kept.id}) running for debugging: ${kept.reason}`,
    `  shell:   npx vmharness ssh ${kept.name}`,
    `  or:      ${sshCommand(kept).join(' ')}`,
    `  console: ${join(kept.dir, 'console.log')}`,
    `  stop:    npx vmharness kept --stop ${kept.id}`,
    '',
  ].join('\n')
}

/** The OpenSSH command line for a kept VM: its own key, its pinned host key, nothing from ~/.ssh. */
export function sshCommand(kept: KeptVm): string[] {
  return [
    'ssh',
    '-i', join(kept.dir, 'client_key'),
    '-p', String(kept.sshPort),
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${join(kept.dir, 'known_hosts')}`,
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'LogLevel=ERROR',
    `${kept.sshUser}@127.0.0.1`,
  ]
}
