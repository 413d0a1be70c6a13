import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { LibvirtHypervisor } from '../../src/hypervisor/libvirt/libvirt-hypervisor.js'
import type { Vm } from '../../src/machine/vm.js'

/** The sandbox this test run is in (scripts/libvirt-sandbox sets these), or why the libvirt tests cannot run here. */
export const sandbox = process.env.VMHARNESS_LIBVIRT_SANDBOX
  ? { dir: process.env.VMHARNESS_LIBVIRT_SANDBOX, localUri: process.env.VMHARNESS_LIBVIRT_URI as string, remoteUri: process.env.VMHARNESS_LIBVIRT_REMOTE_URI as string }
  : undefined

export const sandboxMissing = sandbox
  ? undefined
  : 'runs only inside scripts/libvirt-sandbox (a libvirtd of its own in namespaces): npm test runs this project there, as root with libvirt-daemon-system, dnsmasq-base and openssh-server installed'

const run = promisify(execFile)

/** One virsh command on the sandbox's daemon, outside the code under test: its stdout. */
export async function virsh(...args: string[]): Promise<string> {
  const { stdout } = await run('virsh', ['-q', '-c', sandbox?.localUri ?? 'qemu:///system', ...args], { env: { ...process.env, LC_ALL: 'C' } })
  return stdout
}

/** Names of the domains, networks and volumes on the sandbox's daemon that start with `prefix`. */
export async function libvirtObjectsNamed(prefix: string): Promise<string[]> {
  const domains = (await virsh('list', '--all', '--name')).split('\n')
  const networks = (await virsh('net-list', '--all', '--name')).split('\n')
  await virsh('pool-refresh', 'vmharness').catch(() => '')
  const volumes = (await virsh('vol-list', 'vmharness').catch(() => '')).split('\n').map((line) => line.trim().split(/\s+/)[0] ?? '')
  return [...domains.map((d) => `domain ${d.trim()}`), ...networks.map((n) => `network ${n.trim()}`), ...volumes.map((v) => `volume ${v}`)].filter((name) => name.split(' ')[1]?.startsWith(prefix))
}

/** The libvirt domain a VM runs as. */
export function domainOf(vm: Vm): string {
  return /<name>([^<]+)<\/name>/.exec((vm.hypervisor as LibvirtHypervisor).domainXml(vm.handle))?.[1] as string
}
