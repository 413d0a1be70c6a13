import { describe, expect, it } from 'vitest'
import { buildQemuArgv, escapeOptionValue, type QemuLaunch } from '../../src/hypervisor/qemu/qemu-argv.js'

const launch: QemuLaunch = {
  accel: 'tcg',
  machine: 'pc',
  memoryMiB: 256,
  cpus: 2,
  kernel: '/cache/vmlinuz',
  initrd: '/cache/initrd.img',
  kernelArgs: ['console=ttyS0', 'root=/dev/vda'],
  disk: '/run/vm-1/disk.qcow2',
  seedIso: '/run/vm-1/seed.iso',
  sshHostPort: 40022,
  qmpSocket: '/run/vm-1/qmp.sock',
  consoleSocket: '/run/vm-1/console.sock',
  consoleLog: '/run/vm-1/console.log',
}

function optionAfter(argv: string[], flag: string): string[] {
  return argv.flatMap((value, index) => (argv[index - 1] === flag ? [value] : []))
}

describe('buildQemuArgv', () => {
  it('forwards SSH from 127.0.0.1 only, and fences the guest in (restrict=on)', () => {
    const netdev = optionAfter(buildQemuArgv(launch), '-netdev')
    expect(netdev).toEqual(['user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22'])
  })

  it('lets the guest out only through the proxy forward, and only when the machine asks for outside access', () => {
    const netdev = optionAfter(buildQemuArgv({ ...launch, outsideAccess: true, outsideProxyCommand: '/usr/bin/node -e x /run/a,b/outside.sock' }), '-netdev')[0]
    expect(netdev).toBe('user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22,guestfwd=tcp:10.0.2.100:3128-cmd:/usr/bin/node -e x /run/a,,b/outside.sock')
  })

  it('adds a NIC per network after the management NIC, on the switch port of its machine number', () => {
    const argv = buildQemuArgv({ ...launch, networks: [{ index: 2, node: 3, mac: '52:54:00:12:02:03', switchSocket: '/run/net,1/sw' }] })
    expect(optionAfter(argv, '-netdev')).toEqual(['user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22', 'vde,id=vnet2,sock=/run/net,,1/sw,port=3'])
    const nics = optionAfter(argv, '-device').filter((device) => device.startsWith('virtio-net'))
    expect(nics).toEqual(['virtio-net-pci,netdev=net0,id=net0-dev,mac=52:54:00:00:00:01,romfile=', 'virtio-net-pci,netdev=vnet2,id=vnet2-dev,mac=52:54:00:12:02:03,romfile='])
  })

  it('keeps the kernel command line as one argument', () => {
    expect(optionAfter(buildQemuArgv(launch), '-append')).toEqual(['console=ttyS0 root=/dev/vda'])
  })

  it('attaches the overlay by node name and the seed read-only', () => {
    const blockdevs = optionAfter(buildQemuArgv(launch), '-blockdev')
    expect(blockdevs[0]).toContain('filename=/run/vm-1/disk.qcow2,node-name=disk0-file')
    expect(blockdevs).toContain('driver=raw,file=seed-file,node-name=seed,read-only=on')
    expect(blockdevs.some((value) => value.includes('seed.iso') && value.includes('read-only=on'))).toBe(true)
  })

  it('uses PCI devices on pc and MMIO devices on microvm', () => {
    expect(optionAfter(buildQemuArgv(launch), '-device')).toEqual(expect.arrayContaining(['virtio-rng-pci,id=rng0', 'virtio-blk-pci,drive=disk0,id=disk0-dev']))
    const micro = buildQemuArgv({ ...launch, machine: 'microvm' })
    expect(optionAfter(micro, '-device')).toEqual(expect.arrayContaining(['virtio-rng-device,id=rng0', 'virtio-net-device,netdev=net0,id=net0-dev,mac=52:54:00:00:00:01']))
    expect(optionAfter(micro, '-machine')[0]).toMatch(/^microvm,/)
  })

  it('asks for the host CPU only under KVM', () => {
    expect(buildQemuArgv(launch)).not.toContain('-cpu')
    expect(optionAfter(buildQemuArgv({ ...launch, accel: 'kvm' }), '-cpu')).toEqual(['host'])
    expect(optionAfter(buildQemuArgv({ ...launch, accel: 'kvm' }), '-accel')).toEqual(['kvm'])
  })

  it("gives a TCG guest QEMU's max CPU (SVM for a nested KVM) only when asked; under KVM the host CPU either way", () => {
    expect(optionAfter(buildQemuArgv({ ...launch, cpuModel: 'max' }), '-cpu')).toEqual(['max'])
    expect(buildQemuArgv({ ...launch, cpuModel: 'default' })).not.toContain('-cpu')
    expect(optionAfter(buildQemuArgv({ ...launch, accel: 'kvm', cpuModel: 'max' }), '-cpu')).toEqual(['host'])
  })

  it('serves QMP and the console on unix sockets, the console also into a log', () => {
    const chardevs = optionAfter(buildQemuArgv(launch), '-chardev')
    expect(chardevs).toContain('socket,id=qmp,path=/run/vm-1/qmp.sock,server=on,wait=off')
    expect(chardevs.find((value) => value.startsWith('socket,id=console'))).toContain('logfile=/run/vm-1/console.log')
  })

  it('waits for an incoming state only when restoring', () => {
    expect(buildQemuArgv(launch)).not.toContain('-incoming')
    expect(optionAfter(buildQemuArgv({ ...launch, incoming: true }), '-incoming')).toEqual(['defer'])
  })

  it('doubles commas in paths so they cannot add options', () => {
    expect(escapeOptionValue('/tmp/a,b/disk.qcow2')).toBe('/tmp/a,,b/disk.qcow2')
    const argv = buildQemuArgv({ ...launch, disk: '/tmp/x,format=raw/disk.qcow2' })
    expect(optionAfter(argv, '-blockdev')[0]).toContain('filename=/tmp/x,,format=raw/disk.qcow2,')
  })

  it("sets the disk's I/O mode only on the VM's own disk file, and only when chosen", () => {
    expect(buildQemuArgv(launch).join(' ')).not.toContain('aio=')
    const blockdevs = optionAfter(buildQemuArgv({ ...launch, diskIo: 'io_uring' }), '-blockdev')
    expect(blockdevs[0]).toMatch(/node-name=disk0-file,.*,aio=io_uring$/)
    expect(blockdevs.slice(1).join(' ')).not.toContain('aio=')
  })

  it('omits the seed when there is none', () => {
    expect(buildQemuArgv({ ...launch, seedIso: undefined }).join(' ')).not.toContain('seed')
  })
})
