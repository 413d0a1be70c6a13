import { SpecError } from '../../errors.js'

export const defaultLibvirtUri = 'qemu:///system'

/** How the harness reaches one libvirt host: the URI virsh gets and, for a remote one, the SSH parts of it. */
export interface LibvirtTarget {
  uri: string
  /** Undefined for a daemon on this machine (its guests' addresses are reachable from here). */
  remote: RemoteHost | undefined
}

export interface RemoteHost {
  user: string
  host: string
  port: number
  /** The URI's `keyfile`: the private key SSH logs in with (else the user's default keys). */
  keyfile: string | undefined
}

/**
 * The URIs a spec or VMHARNESS_LIBVIRT_URI names: one, or several separated by commas (vitest
 * workers are spread over them). Each must be a qemu URI; a remote one is reached over SSH.
 */
export function parseLibvirtUris(value: string, field: string): LibvirtTarget[] {
  const uris = value
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
  if (uris.length === 0) throw new SpecError('names no libvirt URI; give one such as qemu:///system or qemu+ssh://user@host/system', field)
  return uris.map((uri) => parseLibvirtUri(uri, field))
}

export function parseLibvirtUri(uri: string, field: string): LibvirtTarget {
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    throw new SpecError(`'${uri}' is not a URI; give one such as qemu:///system or qemu+ssh://user@host/system`, field)
  }
  const [driver, transport] = url.protocol.replace(/:$/, '').split('+')
  if (driver !== 'qemu') throw new SpecError(`'${uri}' is not a QEMU URI: the libvirt backend runs guests on libvirt's QEMU driver (qemu:// or qemu+ssh://)`, field)
  if (url.pathname === '/session') throw new SpecError(`'${uri}': the libvirt backend needs the system daemon (…/system): each VM gets a network of its own, which a session daemon cannot make`, field)
  if (url.pathname !== '/system') throw new SpecError(`'${uri}' does not name the system daemon (…/system)`, field)
  if (!url.hostname) {
    if (transport !== undefined && transport !== 'unix') throw new SpecError(`'${uri}' names a transport (${transport}) but no host`, field)
    return { uri, remote: undefined }
  }
  if (transport !== 'ssh') {
    throw new SpecError(`'${uri}': a remote libvirt host is reached over SSH only (qemu+ssh://user@host/system): the harness reaches its guests through the same SSH`, field)
  }
  return {
    uri,
    remote: {
      user: decodeURIComponent(url.username) || 'root',
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port ? Number(url.port) : 22,
      keyfile: url.searchParams.get('keyfile') ?? undefined,
    },
  }
}

/**
 * The host a worker uses when several are named: vitest's worker i takes host i mod N, so a
 * suite's workers spread over the hosts. Outside vitest, the first.
 */
export function pickForWorker<T>(targets: readonly T[], env: NodeJS.ProcessEnv = process.env): T {
  const worker = Number(env.VITEST_POOL_ID ?? env.VITEST_WORKER_ID ?? '1')
  const index = Number.isInteger(worker) && worker > 0 ? (worker - 1) % targets.length : 0
  return targets[index] as T
}
