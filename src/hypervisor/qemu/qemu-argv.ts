import type { CpuModel, MachineType } from '../../spec/vm-spec.js'
import { outsideProxyAddress } from '../../network/outside-address.js'
import type { DiskIoMode } from './disk-io.js'

export interface QemuLaunch {
  accel: 'kvm' | 'tcg'
  machine: MachineType
  /** Under TCG only: 'max' gives the guest SVM and nested paging. Under KVM the guest gets `-cpu host`. */
  cpuModel?: CpuModel
  memoryMiB: number
  cpus: number
  /** Undefined: the firmware boots the disk's own bootloader (machine 'pc'). */
  kernel: string | undefined
  initrd: string | undefined
  kernelArgs: string[]
  /** The VM's own qcow2 overlay. */
  disk: string
  seedIso: string | undefined
  sshHostPort: number
  qmpSocket: string
  consoleSocket: string
  consoleLog: string
  /** Start paused, waiting for `migrate-incoming` (restoring a saved state); stays paused until `cont`. */
  incoming?: boolean
  /** One NIC per virtual network, after the management NIC: on the network's switch, at the port of its machine number. */
  networks?: QemuNetworkNic[]
  /** The guest may reach the world through the harness's HTTP proxy (see outside-proxy.ts); else the management NIC carries the host's SSH and nothing else. */
  outsideAccess?: boolean
  /** The program QEMU runs per guest connection to the proxy; filled in at launch (it names this run's socket). */
  outsideProxyCommand?: string
  /** How QEMU reads and writes the VM's own disk file; QEMU's default (threads) when unset. A host matter, not part of a saved state. */
  diskIo?: DiskIoMode
}

/**
 * The management NIC's MAC, outside the networks' 52:54:00:12:k:n (QEMU's default,
 * 52:54:00:12:34:56, is machine 86 on network 52).
 */
export const managementMac = '52:54:00:00:00:01'

export interface QemuNetworkNic {
  index: number
  node: number
  mac: string
  switchSocket: string
}

/** The ids of network k's netdev and NIC; QMP's `set_link` names the NIC, so the guest sees its carrier go. */
export function networkIds(index: number): { netdev: string; device: string } {
  return { netdev: `vnet${index}`, device: `vnet${index}-dev` }
}

/**
 * The whole QEMU command line as an array: never joined into a shell string.
 * The device set depends only on the machine type, so that a saved state fits any VM of the same spec.
 */
export function buildQemuArgv(launch: QemuLaunch): string[] {
  const bus = launch.machine === 'microvm' ? 'device' : 'pci'
  const nicRom = bus === 'pci' ? ',romfile=' : ''
  const argv = [
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-machine',
    machineOption(launch.machine),
    '-accel',
    launch.accel,
    ...cpuOption(launch),
    '-m',
    `${launch.memoryMiB}M`,
    '-smp',
    String(launch.cpus),
    ...(launch.kernel ? ['-kernel', launch.kernel, ...(launch.initrd ? ['-initrd', launch.initrd] : []), '-append', launch.kernelArgs.join(' ')] : []),
    '-blockdev',
    `driver=file,filename=${escapeOptionValue(launch.disk)},node-name=disk0-file,cache.direct=off${launch.diskIo ? `,aio=${launch.diskIo}` : ''}`,
    '-blockdev',
    'driver=qcow2,file=disk0-file,node-name=disk0',
    '-device',
    `virtio-blk-${bus},drive=disk0,id=disk0-dev${launch.kernel ? '' : ',bootindex=0'}`,
  ]
  if (launch.seedIso) {
    argv.push(
      '-blockdev',
      `driver=file,filename=${escapeOptionValue(launch.seedIso)},node-name=seed-file,read-only=on`,
      '-blockdev',
      'driver=raw,file=seed-file,node-name=seed,read-only=on',
      '-device',
      `virtio-blk-${bus},drive=seed,id=seed-dev`,
    )
  }
  // restrict=on: the guest reaches no address outside the VM (neither the world nor, through
  // 10.0.2.2, the host's loopback); the host's forward to its sshd and the proxy forward still work.
  const proxy = launch.outsideAccess ? `,guestfwd=tcp:${outsideProxyAddress.host}:${outsideProxyAddress.port}-cmd:${escapeOptionValue(launch.outsideProxyCommand ?? 'PROXY')}` : ''
  argv.push('-netdev', `user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:${launch.sshHostPort}-:22${proxy}`, '-device', `virtio-net-${bus},netdev=net0,id=net0-dev,mac=${managementMac}${nicRom}`)
  for (const nic of launch.networks ?? []) {
    const { netdev, device } = networkIds(nic.index)
    argv.push('-netdev', `vde,id=${netdev},sock=${escapeOptionValue(nic.switchSocket)},port=${nic.node}`, '-device', `virtio-net-${bus},netdev=${netdev},id=${device},mac=${nic.mac}${nicRom}`)
  }
  argv.push(
    '-device',
    `virtio-rng-${bus},id=rng0`,
    '-chardev',
    `socket,id=console,path=${escapeOptionValue(launch.consoleSocket)},server=on,wait=off,logfile=${escapeOptionValue(launch.consoleLog)},logappend=on`,
    '-serial',
    'chardev:console',
    '-chardev',
    `socket,id=qmp,path=${escapeOptionValue(launch.qmpSocket)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
  )
  if (launch.incoming) argv.push('-S', '-incoming', 'defer')
  return argv
}

function cpuOption(launch: QemuLaunch): string[] {
  if (launch.accel === 'kvm') return ['-cpu', 'host']
  return launch.cpuModel === 'max' ? ['-cpu', 'max'] : []
}

function machineOption(machine: MachineType): string {
  return machine === 'microvm' ? 'microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on,pit=on,pic=on' : 'pc'
}

/** QEMU option values separate on commas; a literal comma is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replaceAll(',', ',,')
}
