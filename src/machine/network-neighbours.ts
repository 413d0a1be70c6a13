import { hostnameFor } from '../images/nocloud-seed.js'
import type { JoinableNetwork, NetworkAttachment } from '../spec/network-attachment.js'
import { shellQuote } from '../ssh/shell-quote.js'
import type { Vm } from './vm.js'

/** The running VMs that joined each network through Vm.start. */
const running = new WeakMap<JoinableNetwork, Set<Vm>>()

/**
 * Machines started one by one on a network meet here: the newcomer's seed named the machines
 * that had joined before it, and now each running machine and the newcomer learn, in their
 * /etc/hosts, whatever names they lack (machines started side by side join before either runs).
 * Groups need none of this: their seeds name every member from the start.
 */
export async function introduce(vm: Vm, networks: JoinableNetwork[]): Promise<void> {
  for (const network of networks) {
    const members = running.get(network) ?? new Set<Vm>()
    running.set(network, members)
    const mine = attachmentOn(vm, network)
    if (mine && vm.handle.ssh) {
      const others = [...members].filter((other) => other.handle.ssh)
      const known = new Set(mine.hosts.map((host) => host.name))
      const missing = others.flatMap((other) => (known.has(other.name) ? [] : hostsLines(other, network)))
      await Promise.all([
        ...others.map((other) => appendHosts(other, hostsLines(vm, network))),
        ...(missing.length > 0 ? [appendHosts(vm, missing)] : []),
      ])
    }
    members.add(vm)
  }
}

export function forget(vm: Vm, networks: JoinableNetwork[]): void {
  for (const network of networks) running.get(network)?.delete(vm)
}

function attachmentOn(vm: Vm, network: JoinableNetwork): NetworkAttachment | undefined {
  return vm.networks.find((attachment) => attachment.switchSocket === network.switchSocket)
}

function hostsLines(vm: Vm, network: JoinableNetwork): string[] {
  const attachment = attachmentOn(vm, network)
  const name = hostnameFor(vm.name)
  return attachment ? [`${attachment.ipv4} ${name}`, `${attachment.ipv6} ${name}`] : []
}

async function appendHosts(vm: Vm, lines: string[]): Promise<void> {
  if (lines.length > 0) await vm.harnessCommand(`printf '%s\\n' ${lines.map(shellQuote).join(' ')} >> /etc/hosts`)
}
