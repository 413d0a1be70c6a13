import { fenceFilterName } from './guest-fence.js'

/** The namespace of the harness's tag in a domain's <metadata>: how the sweep knows its domains. */
export const metadataNamespace = 'https://vmharness.dev/libvirt/1'

export interface DomainDefinition {
  name: string
  uuid: string
  /** 'kvm' where the hypervisor host's KVM works, else 'qemu' (TCG). */
  type: 'kvm' | 'qemu'
  /** libvirt has no microvm: those guests run on q35, whose virtio-pci devices the images' kernels have. */
  machine: 'q35' | 'pc'
  memoryMiB: number
  cpus: number
  /** Direct kernel boot; without it the firmware boots the disk's own bootloader. */
  kernel?: { path: string; initrd: string | undefined; cmdline: string }
  disk: string
  /** 'io_uring' where the host allows it (domain-extras.ts); absent: QEMU's thread pool. */
  diskIo?: 'io_uring'
  /** The firmware ROM of a direct kernel boot (qboot, domain-extras.ts); absent: the machine's default (SeaBIOS). */
  firmware?: string
  seed: string | undefined
  network: string
  mac: string
  /** A file on the hypervisor host the serial console is appended to. */
  consoleLog: string
  /** The run that made the domain (its tag's `run`). */
  run: string
  /** The NIC references the fence filter (guest-fence.ts); off only where VMHARNESS_LIBVIRT_FENCE=off asks. Absent in older saved states: fenced. */
  fenced?: boolean
}

/**
 * How a domain starts: as defined, or with its NIC's link down and without its fence, for the
 * fence to be put in place while the guest boots (fence-after-start.ts).
 */
export interface DomainXmlOptions {
  fenceAfterStart?: boolean
}

/** The domain XML of one VM, every value escaped. */
export function domainXml(domain: DomainDefinition, options: DomainXmlOptions = {}): string {
  const fenced = domain.fenced !== false
  const fenceLater = fenced && options.fenceAfterStart === true
  const boot = domain.kernel
    ? [
        `    <kernel>${text(domain.kernel.path)}</kernel>`,
        ...(domain.kernel.initrd ? [`    <initrd>${text(domain.kernel.initrd)}</initrd>`] : []),
        `    <cmdline>${text(domain.kernel.cmdline)}</cmdline>`,
      ]
    : ["    <boot dev='hd'/>"]
  return [
    `<domain type='${domain.type}'>`,
    `  <name>${text(domain.name)}</name>`,
    `  <uuid>${text(domain.uuid)}</uuid>`,
    '  <metadata>',
    `    <vmh:tag xmlns:vmh='${metadataNamespace}' run='${attribute(domain.run)}'/>`,
    '  </metadata>',
    `  <memory unit='MiB'>${domain.memoryMiB}</memory>`,
    `  <vcpu>${domain.cpus}</vcpu>`,
    '  <os>',
    `    <type arch='x86_64' machine='${domain.machine}'>hvm</type>`,
    ...(domain.firmware ? [`    <loader type='rom'>${text(domain.firmware)}</loader>`] : []),
    ...boot,
    '  </os>',
    // Without <acpi/> libvirt passes -no-acpi, and the guest cannot be powered off gracefully.
    '  <features><acpi/></features>',
    ...(domain.type === 'kvm' ? ["  <cpu mode='host-passthrough'/>"] : []),
    "  <clock offset='utc'/>",
    '  <on_poweroff>destroy</on_poweroff>',
    '  <on_reboot>restart</on_reboot>',
    '  <on_crash>destroy</on_crash>',
    '  <devices>',
    `    <disk type='file' device='disk'><driver name='qemu' type='qcow2'${domain.diskIo ? ` io='${domain.diskIo}'` : ''}/><source file='${attribute(domain.disk)}'/><target dev='vda' bus='virtio'/>${onRootBus(3)}</disk>`,
    ...(domain.seed ? [`    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${attribute(domain.seed)}'/><target dev='vdb' bus='virtio'/><readonly/>${onRootBus(4)}</disk>`] : []),
    `    ${interfaceXml(domain, { fenced: fenced && !fenceLater, linkUp: !fenceLater })}`,
    // append: a revert or restore would otherwise empty the log.
    `    <serial type='file'><source path='${attribute(domain.consoleLog)}' append='on'/><target port='0'/></serial>`,
    `    <rng model='virtio'><backend model='random'>/dev/urandom</backend>${onRootBus(5)}</rng>`,
    // Without these, libvirt adds a USB controller and a balloon that no guest here uses, and
    // that every boot initializes and every saved state carries.
    "    <controller type='usb' model='none'/>",
    "    <memballoon model='none'/>",
    '  </devices>',
    '</domain>',
    '',
  ].join('\n')
}

/**
 * The NIC of a domain: on its network, on the root bus, fenced or not, its link up or down. Under
 * TCG its frames go through QEMU (driver 'qemu', which libvirt would pick there anyway): the fence
 * put on after the start relies on QEMU dropping frames while the link is down.
 */
export function interfaceXml(domain: DomainDefinition, state: { fenced: boolean; linkUp: boolean }): string {
  const driver = domain.type === 'qemu' ? "<driver name='qemu'/>" : ''
  const fence = state.fenced ? `<filterref filter='${fenceFilterName}'/>` : ''
  const link = state.linkUp ? '' : "<link state='down'/>"
  return `<interface type='network'><source network='${attribute(domain.network)}'/><mac address='${attribute(domain.mac)}'/><model type='virtio'/>${driver}${onRootBus(2)}${fence}${link}</interface>`
}

export interface NetworkDefinition {
  name: string
  bridge: string
  /** The network's first address: the host's side of the bridge (x.y.z.1 of a /28). */
  gateway: string
  prefixLength: number
  /** The DHCP range handed to guests. */
  rangeStart: string
  rangeEnd: string
  /** The one guest's MAC and the address DHCP gives it. */
  guest: { mac: string; address: string }
}

/**
 * An isolated network: no <forward>, so nothing leaves it for the host's other interfaces or the
 * world, and no DNS (dnsmasq answers DHCP only).
 */
export function networkXml(network: NetworkDefinition): string {
  return [
    '<network>',
    `  <name>${text(network.name)}</name>`,
    `  <bridge name='${attribute(network.bridge)}' stp='off'/>`,
    "  <dns enable='no'/>",
    `  <ip address='${attribute(network.gateway)}' prefix='${network.prefixLength}'>`,
    `    <dhcp><range start='${attribute(network.rangeStart)}' end='${attribute(network.rangeEnd)}'/><host mac='${attribute(network.guest.mac)}' ip='${attribute(network.guest.address)}'/></dhcp>`,
    '  </ip>',
    '</network>',
    '',
  ].join('\n')
}

/**
 * The devices sit on the root bus itself: left to itself libvirt puts each behind a PCIe root
 * port of its own on q35, and the guest's kernel took ~0.4 s longer to enumerate them (QEMU
 * alone, medians of 7: 3.23 s against 2.85 s to the guest's network step).
 */
function onRootBus(slot: number): string {
  return `<address type='pci' domain='0x0000' bus='0x00' slot='0x${slot.toString(16).padStart(2, '0')}' function='0x0'/>`
}

function text(value: string): string {
  return value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

function attribute(value: string): string {
  return text(value).replaceAll("'", '&apos;').replaceAll('"', '&quot;')
}
