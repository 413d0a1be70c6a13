import { hostnameFor } from '../images/nocloud-seed.js'
import type { JoinableNetwork } from '../spec/network-attachment.js'
import { shellQuote } from '../ssh/shell-quote.js'
import type { Vm } from './vm.js'

/** The running VMs that joined each network through Vm.start, in the order they came up. */
const running = new WeakMap<JoinableNetwork, Set<Vm>>()

/**
 * A machine that starts on a network already knows the machines before it (its seed names them);
 * those learn its name now, in their /etc/hosts. Groups need none of this: their seeds name
 * every member from the start.
 */
export async function introduce(vm: Vm, networks: JoinableNetwork[]): Promise<void> {
  for (const network of networks) {
    const attachment = vm.networks.find((candidate) => candidate.network === network.name && candidate.switchSocket === network.switchSocket)
    const members = running.get(network) ?? new Set<Vm>()
    running.set(network, members)
    if (attachment) {
      const name = hostnameFor(vm.name)
      const lines = [`${attachment.ipv4} ${name}`, `${attachment.ipv6} ${name}`].map(shellQuote).join(' ')
      await Promise.all([...members].map((other) => other.succeed(`printf '%s\\n' ${lines} >> /etc/hosts`)))
    }
    members.add(vm)
  }
}

export function forget(vm: Vm, networks: JoinableNetwork[]): void {
  for (const network of networks) running.get(network)?.delete(vm)
}
