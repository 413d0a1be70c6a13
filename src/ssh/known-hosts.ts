import { createHmac } from 'node:crypto'

/**
 * The host key blobs an OpenSSH known_hosts text lists for `host` on `port`: plain entries
 * (`host`, `[host]:port`, comma lists, any case) and hashed ones (`|1|salt|hmac`). Marked (@revoked,
 * @cert-authority) and negated entries are left out: they never pin a key.
 */
export function knownHostKeys(text: string, host: string, port: number): Buffer[] {
  // OpenSSH matches names without regard to case, and hashes the lowercased name.
  const lowered = host.toLowerCase()
  const name = port === 22 ? lowered : `[${lowered}]:${port}`
  const keys: Buffer[] = []
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields.length < 3 || fields[0]?.startsWith('#') || fields[0]?.startsWith('@')) continue
    const [hosts = '', , blob = ''] = fields
    if (matches(hosts, name)) keys.push(Buffer.from(blob, 'base64'))
  }
  return keys
}

function matches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt = '', digest = ''] = hosts.split('|')
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === digest
  }
  return hosts.split(',').some((entry) => entry.toLowerCase() === name)
}
