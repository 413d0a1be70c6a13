import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { domainXml, interfaceXml, metadataNamespace, networkXml, type DomainDefinition, type NetworkDefinition } from '../../src/hypervisor/libvirt/domain-xml.js'
import { VirshShell } from '../../src/hypervisor/libvirt/virsh-shell.js'

const virsh = '/usr/bin/virsh'
const tricky = `it's "odd" <b> & more`

function domain(overrides: Partial<DomainDefinition> = {}): DomainDefinition {
  return {
    name: 'vmh-3f2a-web',
    uuid: '0b7e2c52-2d5a-4f4e-9a45-3f1d2f6a2b10',
    type: 'kvm',
    machine: 'q35',
    memoryMiB: 384,
    cpus: 2,
    kernel: { path: '/pool/vmh-kernel-ab12', initrd: '/pool/vmh-initrd-ab12', cmdline: 'console=ttyS0 root=/dev/vda rw' },
    disk: '/pool/vmh-3f2a-web.qcow2',
    seed: '/pool/vmh-3f2a-web-seed.img',
    network: 'vmh-3f2a-net',
    mac: '52:54:00:3f:2a:01',
    consoleLog: '/pool/vmh-3f2a-web-console.log',
    run: 'run-1234',
    ...overrides,
  }
}

function network(overrides: Partial<NetworkDefinition> = {}): NetworkDefinition {
  return { name: 'vmh-3f2a-net', bridge: 'vmh3f2a', gateway: '10.213.7.1', prefixLength: 28, rangeStart: '10.213.7.2', rangeEnd: '10.213.7.14', guest: { mac: '52:54:00:8a:bc:de', address: '10.213.7.2' }, ...overrides }
}

/** The XML's lines that hold `needle`. */
function linesWith(xml: string, needle: string): string[] {
  return xml.split('\n').filter((line) => line.includes(needle))
}

/** Every '<' opens a tag, every '&' starts one of XML's five entities, every attribute is single-quoted and holds no bare quote. */
function expectWellEscaped(xml: string): void {
  expect(xml.replace(/<\/?[A-Za-z][\w:.-]*(\s+[\w:.-]+='[^'<&]*(&(amp|lt|gt|quot|apos);[^'<&]*)*')*\s*\/?>/g, '')).not.toMatch(/[<>]/)
  expect(xml).not.toMatch(/&(?!(amp|lt|gt|quot|apos);)/)
}

describe('domainXml', () => {
  it('escapes the name, paths, command line, network and run wherever they go', () => {
    const xml = domainXml(
      domain({
        name: `vm ${tricky}`,
        kernel: { path: `/k/${tricky}/vmlinuz`, initrd: `/k/${tricky}/initrd`, cmdline: `console=ttyS0 x="a b" y='c' <&>` },
        disk: `/pool/${tricky}.qcow2`,
        seed: `/pool/${tricky}-seed.img`,
        network: `net ${tricky}`,
        consoleLog: `/pool/${tricky}.log`,
        run: `run ${tricky}`,
      }),
    )
    expectWellEscaped(xml)
    const inText = `it's "odd" &lt;b&gt; &amp; more`
    const inAttribute = 'it&apos;s &quot;odd&quot; &lt;b&gt; &amp; more'
    expect(xml).toContain(`<name>vm ${inText}</name>`)
    expect(xml).toContain(`<kernel>/k/${inText}/vmlinuz</kernel>`)
    expect(xml).toContain(`<initrd>/k/${inText}/initrd</initrd>`)
    expect(xml).toContain(`<cmdline>console=ttyS0 x="a b" y='c' &lt;&amp;&gt;</cmdline>`)
    expect(xml).toContain(`<source file='/pool/${inAttribute}.qcow2'/>`)
    expect(xml).toContain(`<source file='/pool/${inAttribute}-seed.img'/>`)
    expect(xml).toContain(`<source network='net ${inAttribute}'/>`)
    expect(xml).toContain(`<source path='/pool/${inAttribute}.log' append='on'/>`)
    expect(xml).toContain(`run='run ${inAttribute}'`)
    expect(xml).not.toContain(tricky)
    expect(xml).not.toContain('<b>')
  })

  it('boots the kernel directly when given one, with its initrd and command line', () => {
    const xml = domainXml(domain())
    expect(xml).toMatch(/<os>\n\s+<type arch='x86_64' machine='q35'>hvm<\/type>\n\s+<kernel>\/pool\/vmh-kernel-ab12<\/kernel>\n\s+<initrd>\/pool\/vmh-initrd-ab12<\/initrd>\n\s+<cmdline>console=ttyS0 root=\/dev\/vda rw<\/cmdline>\n\s+<\/os>/)
    expect(xml).not.toContain('<boot ')
  })

  it('leaves out the initrd when the kernel has none', () => {
    const xml = domainXml(domain({ kernel: { path: '/pool/k', initrd: undefined, cmdline: 'console=ttyS0' } }))
    expect(xml).toContain('<kernel>/pool/k</kernel>')
    expect(xml).toContain('<cmdline>console=ttyS0</cmdline>')
    expect(xml).not.toContain('<initrd>')
  })

  it("boots the disk through the firmware without a kernel: <boot dev='hd'/>", () => {
    const xml = domainXml(domain({ kernel: undefined, machine: 'pc' }))
    expect(linesWith(xml, '<boot ')).toEqual(["    <boot dev='hd'/>"])
    expect(xml).toContain("<type arch='x86_64' machine='pc'>hvm</type>")
    expect(xml).not.toMatch(/<kernel>|<initrd>|<cmdline>/)
  })

  it("passes the host's CPU through under KVM only", () => {
    const kvm = domainXml(domain({ type: 'kvm' }))
    const tcg = domainXml(domain({ type: 'qemu' }))
    expect(kvm.split('\n')[0]).toBe("<domain type='kvm'>")
    expect(linesWith(kvm, '<cpu')).toEqual(["  <cpu mode='host-passthrough'/>"])
    expect(tcg.split('\n')[0]).toBe("<domain type='qemu'>")
    expect(tcg).not.toContain('<cpu')
  })

  it('attaches the seed as a read-only second disk only when there is one', () => {
    const withSeed = domainXml(domain())
    const seedDisk = linesWith(withSeed, "dev='vdb'")
    expect(seedDisk).toHaveLength(1)
    expect(seedDisk[0]).toContain("<source file='/pool/vmh-3f2a-web-seed.img'/>")
    expect(seedDisk[0]).toContain("<driver name='qemu' type='raw'/>")
    expect(seedDisk[0]).toContain('<readonly/>')
    expect(withSeed.match(/<disk /g)).toHaveLength(2)

    const withoutSeed = domainXml(domain({ seed: undefined }))
    expect(withoutSeed.match(/<disk /g)).toHaveLength(1)
    expect(withoutSeed).not.toContain("dev='vdb'")
    expect(withoutSeed).not.toContain('<readonly/>')
    expect(linesWith(withoutSeed, "dev='vda'")[0]).toContain("<driver name='qemu' type='qcow2'/><source file='/pool/vmh-3f2a-web.qcow2'/>")
  })

  it("tags the domain with the harness's namespace and the run that made it", () => {
    const xml = domainXml(domain({ run: 'run-5678' }))
    expect(xml).toMatch(new RegExp(`<metadata>\\n\\s+<vmh:tag xmlns:vmh='${metadataNamespace.replaceAll('.', '\\.')}' run='run-5678'/>\\n\\s+</metadata>`))
  })

  it('has ACPI, a serial console appended to its log, and the sizes, NIC and identity asked for', () => {
    const xml = domainXml(domain({ memoryMiB: 1536, cpus: 3, mac: '52:54:00:aa:bb:cc', network: 'vmh-net-9' }))
    expect(xml).toContain('<features><acpi/></features>')
    expect(linesWith(xml, '<serial')).toEqual(["    <serial type='file'><source path='/pool/vmh-3f2a-web-console.log' append='on'/><target port='0'/></serial>"])
    expect(xml).toContain("<memory unit='MiB'>1536</memory>")
    expect(xml).toContain('<vcpu>3</vcpu>')
    expect(xml).toContain("<interface type='network'><source network='vmh-net-9'/><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/><address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/><filterref filter='vmharness-fence'/></interface>")
    expect(xml).toContain('<name>vmh-3f2a-web</name>')
    expect(xml).toContain('<uuid>0b7e2c52-2d5a-4f4e-9a45-3f1d2f6a2b10</uuid>')
  })

  it('fences the NIC unless the definition says it is not fenced (VMHARNESS_LIBVIRT_FENCE=off)', () => {
    expect(linesWith(domainXml(domain()), '<interface')[0]).toContain("<filterref filter='vmharness-fence'/>")
    expect(linesWith(domainXml(domain({ fenced: true })), '<interface')[0]).toContain("<filterref filter='vmharness-fence'/>")
    expect(linesWith(domainXml(domain({ fenced: false })), '<interface')[0]).not.toContain('filterref')
  })

  it('starts a fenced NIC with its link down and no filter when the fence goes on after the start; the fenced NIC for that update', () => {
    const starting = linesWith(domainXml(domain(), { fenceAfterStart: true }), '<interface')[0] as string
    expect(starting).toContain("<link state='down'/>")
    expect(starting).not.toContain('filterref')
    expect(linesWith(domainXml(domain()), '<interface')[0]).not.toContain('<link')
    const update = interfaceXml(domain(), { fenced: true, linkUp: false })
    expect(update).toContain("<filterref filter='vmharness-fence'/><link state='down'/></interface>")
    expect(update).toContain("<mac address='52:54:00:3f:2a:01'/>")
    expect(update).toContain("slot='0x02'")
    expect(update).not.toContain('<driver')
    expect(interfaceXml(domain({ type: 'qemu' }), { fenced: true, linkUp: true })).toContain("<model type='virtio'/><driver name='qemu'/>")
    expect(linesWith(domainXml(domain({ fenced: false }), { fenceAfterStart: true }), '<interface')[0]).not.toContain('<link')
  })

  it('asks for no USB controller and no balloon (libvirt adds both by default)', () => {
    const xml = domainXml(domain())
    expect(linesWith(xml, '<controller')).toEqual(["    <controller type='usb' model='none'/>"])
    expect(linesWith(xml, '<memballoon')).toEqual(["    <memballoon model='none'/>"])
  })

  it('puts every PCI device on the root bus, each in a slot of its own (no PCIe root ports)', () => {
    const xml = domainXml(domain())
    const slots = [...xml.matchAll(/<address type='pci' domain='0x0000' bus='0x00' slot='(0x[0-9a-f]{2})' function='0x0'\/>/g)].map((match) => match[1])
    expect(slots).toEqual(['0x03', '0x04', '0x02', '0x05'])
    expect(linesWith(xml, '<address')).toHaveLength(4)
  })

  it('asks for io_uring and a firmware ROM only when the definition has them', () => {
    const plain = domainXml(domain())
    expect(plain).not.toContain('<loader')
    expect(plain).not.toContain(' io=')
    const fast = domainXml(domain({ diskIo: 'io_uring', firmware: '/usr/share/qemu/qboot.rom' }))
    expect(linesWith(fast, '<loader')).toEqual(["    <loader type='rom'>/usr/share/qemu/qboot.rom</loader>"])
    expect(linesWith(fast, "dev='vda'")[0]).toContain("<driver name='qemu' type='qcow2' io='io_uring'/>")
    expect(linesWith(fast, "dev='vdb'")[0]).toContain("<driver name='qemu' type='raw'/>")
  })
})

describe('networkXml', () => {
  it('is isolated: no <forward>, DNS off, DHCP over the range given, with the guest\'s MAC reserved its address', () => {
    const xml = networkXml(network())
    expect(xml).not.toContain('<forward')
    expect(linesWith(xml, '<dns')).toEqual(["  <dns enable='no'/>"])
    expect(xml).toContain("<bridge name='vmh3f2a' stp='off'/>")
    expect(xml).toMatch(/<ip address='10\.213\.7\.1' prefix='28'>\n\s+<dhcp><range start='10\.213\.7\.2' end='10\.213\.7\.14'\/><host mac='52:54:00:8a:bc:de' ip='10\.213\.7\.2'\/><\/dhcp>\n\s+<\/ip>/)
    expect(xml).toContain('<name>vmh-3f2a-net</name>')
  })

  it('escapes its values', () => {
    const xml = networkXml(network({ name: `net ${tricky}`, bridge: `br'"<&>` }))
    expectWellEscaped(xml)
    expect(xml).toContain(`<name>net it's "odd" &lt;b&gt; &amp; more</name>`)
    expect(xml).toContain("<bridge name='br&apos;&quot;&lt;&amp;&gt;' stp='off'/>")
  })
})

/** XML's entities back to characters (what libvirt's XPath output escapes). */
function unescape(value: string): string {
  return value.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&apos;', "'").replaceAll('&amp;', '&')
}

describe.skipIf(!existsSync(virsh))('libvirt itself reads the XML back (virsh on the test driver; skipped: /usr/bin/virsh is not installed)', () => {
  let shell: VirshShell | undefined
  let dir: string | undefined
  // One connection for all: test:///default starts afresh on each, with its own 'test' domain and 'default' network.
  beforeAll(() => {
    shell = new VirshShell(virsh, 'test:///default')
  })
  afterAll(async () => {
    shell?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  async function file(name: string, text: string): Promise<string> {
    dir ??= await mkdtemp(join(tmpdir(), 'vmh-libvirt-xml-'))
    const path = join(dir, name)
    await writeFile(path, text)
    return path
  }

  it.each(['kvm', 'qemu'] as const)('defines a %s domain that validates against the schema, every value as given', async (type) => {
    const run = shell as VirshShell
    const uuid = type === 'kvm' ? '0b7e2c52-2d5a-4f4e-9a45-3f1d2f6a2b10' : '6c1d0f3e-8a8b-4b0e-bb0d-4a1b5d9e7c21'
    const definition = domain({
      type,
      uuid,
      name: `vm-${type} ${tricky}`,
      kernel: { path: `/k/${tricky}/vmlinuz`, initrd: undefined, cmdline: `console=ttyS0 x="a b" y='c' <&>` },
      disk: `/pool/${tricky}-${type}.qcow2`,
      seed: type === 'kvm' ? `/pool/${tricky}-seed.img` : undefined,
      network: `net ${tricky}`,
      consoleLog: `/pool/${tricky}.log`,
      run: `run ${tricky}`,
      ...(type === 'qemu' ? { diskIo: 'io_uring' as const, firmware: `/fw/${tricky}/qboot.rom` } : {}),
    })
    await run.run(['define', '--validate', await file(`${type}.xml`, domainXml(definition))], 10_000)
    expect((await run.run(['domname', uuid], 5000)).trim()).toBe(definition.name)
    const disks = (await run.run(['domblklist', uuid, '--details'], 5000)).trim().split('\n').map((line) => line.trim().split(/\s{2,}/))
    expect(disks).toEqual([['file', 'disk', 'vda', definition.disk], ...(definition.seed ? [['file', 'disk', 'vdb', definition.seed]] : [])])
    const nic = (await run.run(['domiflist', uuid], 5000)).trim().split(/\s{2,}/)
    expect(nic.slice(1)).toEqual(['network', definition.network, 'virtio', definition.mac])
    const xpath = async (path: string) => unescape((await run.run(['dumpxml', uuid, '--xpath', path], 5000)).trim())
    expect(await xpath('/domain/os/kernel/text()')).toBe(definition.kernel?.path)
    expect(await xpath('/domain/os/cmdline/text()')).toBe(definition.kernel?.cmdline)
    expect(await xpath('/domain/devices/serial/source/@path')).toBe(`path="${definition.consoleLog}"`)
    expect(await xpath('/domain/devices/serial/source/@append')).toBe('append="on"')
    // No match prints nothing: the cpu element is there under KVM only.
    expect(await xpath('/domain/cpu/@mode')).toBe(type === 'kvm' ? 'mode="host-passthrough"' : '')
    expect(await xpath('/domain/features/acpi')).toBe('<acpi/>')
    expect(await xpath('/domain/os/loader/text()')).toBe(definition.firmware ?? '')
    expect(await xpath('/domain/devices/disk[1]/driver/@io')).toBe(definition.diskIo ? `io="${definition.diskIo}"` : '')
    expect(await xpath('/domain/devices/interface/address/@slot')).toBe('slot="0x02"')
    expect(unescape((await run.run(['metadata', uuid, metadataNamespace], 5000)).trim())).toBe(`<tag run="${definition.run}"/>`)
    const info = await run.run(['dominfo', uuid], 5000)
    expect(info).toMatch(/^Max memory:\s+393216 KiB$/m)
    expect(info).toMatch(/^CPU\(s\):\s+2$/m)
  })

  it('refuses an XML that breaks the schema (the check above can fail)', async () => {
    const broken = domainXml(domain({ uuid: '9e0d4b5c-1111-4c2b-8a3e-2c4d5e6f7a8b', name: 'broken' })).replace('<acpi/>', '<acpi/><no-such-feature/>')
    await expect((shell as VirshShell).run(['define', '--validate', await file('broken.xml', broken)], 10_000)).rejects.toThrow(/failed to validate against schema/)
  })

  it('defines a network that validates against the schema, isolated and without DNS', async () => {
    const run = shell as VirshShell
    const definition = network({ name: `vmh-net ${tricky}` })
    await run.run(['net-define', '--validate', await file('net.xml', networkXml(definition))], 10_000)
    const names = (await run.run(['net-list', '--all', '--name'], 5000)).split('\n').map((line) => line.trim())
    expect(names).toContain(definition.name)
    const dumped = await run.run(['net-dumpxml', definition.name], 5000)
    expect(dumped).not.toContain('<forward')
    expect(dumped).toMatch(/<dns enable=["']no["']\s*\/>/)
    expect(dumped).toMatch(/<range start=["']10\.213\.7\.2["'] end=["']10\.213\.7\.14["']/)
    expect(dumped).toMatch(/<ip address=["']10\.213\.7\.1["'] prefix=["']28["']>/)
  })
})
