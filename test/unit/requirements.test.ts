import { describe, expect, it } from 'vitest'
import { HostError } from '../../src/errors.js'
import { allPackages, checkRequirements, missingRequirement } from '../../src/host/requirements.js'

describe('requirement groups', () => {
  it("keeps the tests' own packages out of what vmharness needs, and lists them with --tests", () => {
    const testOnly = ['syslinux', 'syslinux-common', 'dosfstools', 'mtools', 'libvirt-clients', 'libvirt-daemon-system', 'dnsmasq-base', 'openssh-server']
    expect(allPackages()).not.toEqual(expect.arrayContaining([expect.stringMatching(/^(syslinux|syslinux-common|dosfstools|mtools|libvirt-.*|dnsmasq-base|openssh-server)$/)]))
    expect(allPackages(['run', 'test'])).toEqual([...allPackages(), ...testOnly])
  })

  it('checks only the groups asked for', async () => {
    expect((await checkRequirements(['test'])).map((check) => check.requirement.id)).toEqual(['syslinux', 'syslinux-mbr', 'mkfs-fat', 'mtools', 'vde-plug', 'virsh', 'libvirtd', 'dnsmasq', 'sshd', 'unshare'])
    expect((await checkRequirements()).map((check) => check.requirement.group ?? 'run')).not.toContain('test')
  })

  it('needs vde2 for networks between machines, and says how to install it when vde_switch is missing', () => {
    expect(allPackages()).toContain('vde2')
    const error = missingRequirement('vde-switch')
    expect(error).toBeInstanceOf(HostError)
    expect(error.message).toContain('vde_switch is missing on this host (needed for networks between machines)')
    expect(error.fix).toMatch(/apt-get install .*vde2.*vmharness doctor --install/)
  })
})
