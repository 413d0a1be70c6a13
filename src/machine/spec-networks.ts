import { SpecError } from '../errors.js'
import { isJoinable, joinNetworks, type JoinableNetwork, type NetworkAttachment, type NetworkChoice } from '../spec/network-attachment.js'
import { resolveSpec, type VmSpec } from '../spec/vm-spec.js'

/** Network objects in the spec are joined here (a machine number each); attachments given as data pass through. */
export function joinSpecNetworks(spec: VmSpec): { attachments: NetworkAttachment[] | undefined; joined: JoinableNetwork[]; machine: string } {
  const entries = spec.networks
  if (!Array.isArray(entries)) return { attachments: entries, joined: [], machine: '' }
  const choices = entries.filter((entry): entry is NetworkChoice => isJoinable(entry) || isJoinable((entry as { network?: unknown } | null)?.network))
  if (choices.length === 0) return { attachments: entries as NetworkAttachment[], joined: [], machine: '' }
  if (choices.length !== entries.length) throw new SpecError('mixes Network objects and attachments: give Network objects only', 'networks')
  const machine = resolveSpec({ ...spec, networks: [] }).name
  return { attachments: joinNetworks(machine, choices), joined: choices.map((choice) => (isJoinable(choice) ? choice : choice.network)), machine }
}
