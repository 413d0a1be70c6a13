import { SpecError } from '../errors.js'
import type { NetworkAttachment } from '../spec/network-attachment.js'
import type { VmHandle } from './hypervisor.js'

/** The VM's attachment to the network named (its first one when no name is given). */
export function attachmentNamed(vm: VmHandle, network: string | undefined): NetworkAttachment {
  const attachments = vm.spec.networks
  if (attachments.length === 0) throw new SpecError(`machine '${vm.name}' is on no network`, 'network')
  if (network === undefined) return attachments[0] as NetworkAttachment
  const found = attachments.find((attachment) => attachment.network === network)
  if (!found) throw new SpecError(`machine '${vm.name}' is not on network '${network}' (it is on ${attachments.map((a) => `'${a.network}'`).join(', ')})`, 'network')
  return found
}
