import type { NetworkAttachment } from '../spec/network-attachment.js'
import type { ExecResult } from '../ssh/ssh-session.js'
import { pollUntil } from './poll.js'

const addressesTimeoutMs = 30_000

/**
 * Until the guest has every network address of its spec and none is still tentative (IPv6
 * duplicate detection): a test's first packet to a peer must not find the address missing.
 */
export async function waitForNetworkAddresses(
  vmName: string,
  exec: (command: string, options: { signal?: AbortSignal }) => Promise<ExecResult>,
  attachments: NetworkAttachment[],
  signal?: AbortSignal,
): Promise<void> {
  if (attachments.length === 0) return
  await pollUntil(
    'its network addresses to be up',
    vmName,
    async (attemptSignal) => {
      const result = await exec('ip -o addr show', { signal: attemptSignal })
      const missing = missingAddresses(result.stdout, attachments)
      return missing.length === 0 ? { done: true, value: undefined } : { done: false, seen: `not yet up: ${missing.join(', ')}` }
    },
    { timeoutMs: addressesTimeoutMs, intervalMs: 100, signal },
  )
}

/** The attachments' addresses that `ip -o addr show` does not list as usable. */
export function missingAddresses(ipAddrOutput: string, attachments: NetworkAttachment[]): string[] {
  const usable = new Set<string>()
  for (const line of ipAddrOutput.split('\n')) {
    const match = /\binet6?\s+([0-9a-f.:]+)\//i.exec(line)
    if (match?.[1] && !/\btentative\b/.test(line)) usable.add(match[1].toLowerCase())
  }
  return attachments.flatMap(({ ipv4, ipv6 }) => [ipv4, ipv6]).filter((address) => !usable.has(address))
}
