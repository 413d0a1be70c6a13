import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HostError } from '../../errors.js'
import type { LibvirtConnection } from './libvirt-connection.js'

/**
 * Whether new VMs are fenced: yes unless VMHARNESS_LIBVIRT_FENCE=off. libvirt instantiating the
 * filter runs ~120 ebtables and iptables commands (0.7 s before a guest runs here, measured
 * 2026-12): a TCG boot does that while its guest boots (fence-after-start.ts); a KVM boot and a
 * restore do it before the guest runs.
 */
export function fenceWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.VMHARNESS_LIBVIRT_FENCE !== 'off'
}

/** The nwfilter every VM's NIC references; defined once per host and left there, like the pool. */
export const fenceFilterName = 'vmharness-fence'

/** A saved domain XML (one NIC) with the fence on its NIC, for a clone of a guest saved unfenced. */
export function withFence(xml: string): string {
  const ends = xml.split('</interface>').length - 1
  if (ends !== 1) throw new Error(`the saved domain XML has ${ends} network interfaces, where the harness makes one`)
  return xml.replace('</interface>', `<filterref filter='${fenceFilterName}'/></interface>`)
}

/**
 * What a guest may exchange with its network, which holds only the hypervisor host's bridge:
 * DHCP, ARP, and SSH from the host to the guest. Everything else is dropped, so a guest cannot
 * reach what the hypervisor host serves on all its addresses through the bridge's address
 * (libvirt's isolated network blocks forwarding only). The rules are ebtables rules (on the
 * bridge itself): iptables rules would need br_netfilter to see bridged frames.
 */
export function fenceFilterXml(uuid?: string): string {
  return [
    `<filter name='${fenceFilterName}' chain='root'>`,
    ...(uuid ? [`  <uuid>${uuid}</uuid>`] : []),
    "  <rule action='accept' direction='out' priority='100'><ip protocol='udp' srcportstart='68' dstportstart='67'/></rule>",
    "  <rule action='accept' direction='in' priority='100'><ip protocol='udp' srcportstart='67' dstportstart='68'/></rule>",
    "  <rule action='accept' direction='in' priority='110'><ip protocol='tcp' dstportstart='22'/></rule>",
    "  <rule action='accept' direction='out' priority='110'><ip protocol='tcp' srcportstart='22'/></rule>",
    "  <rule action='accept' direction='inout' priority='120'><arp/></rule>",
    "  <rule action='drop' direction='inout' priority='500'><mac/></rule>",
    '</filter>',
    '',
  ].join('\n')
}

/**
 * Defines (or redefines, so a new version replaces an old one) the fence filter on a host. libvirt
 * redefines a filter only under its UUID: the one there is reused, and when another process
 * defined it first (workers start together), the UUID its refusal names.
 */
export async function ensureFenceFilter(connection: LibvirtConnection): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vmharness-nwfilter-'))
  const define = async (uuid: string | undefined) => {
    const file = join(dir, 'fence.xml')
    await writeFile(file, fenceFilterXml(uuid), { mode: 0o600 })
    await connection.run(['nwfilter-define', file])
  }
  try {
    const existing = await connection.run(['nwfilter-dumpxml', fenceFilterName]).catch(() => '')
    await define(uuidIn(existing)).catch(async (error: Error) => {
      const taken = /already exists with uuid ([0-9a-f-]{36})/i.exec(error.message)?.[1]
      if (!taken) throw error
      await define(taken)
    })
  } catch (error) {
    throw new HostError(
      `libvirt at ${connection.uri} could not define the network filter that fences guests off the host (${(error as Error).message})`,
      "the libvirt backend needs libvirt's nwfilter driver and ebtables on the hypervisor host (Debian: libvirt-daemon-system; its iptables package provides ebtables)",
      { cause: error },
    )
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

function uuidIn(xml: string): string | undefined {
  return /<uuid>([0-9a-f-]{36})<\/uuid>/i.exec(xml)?.[1]
}
