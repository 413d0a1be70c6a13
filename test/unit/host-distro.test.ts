import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { doctor } from '../../src/cli/doctor.js'
import { planInstall } from '../../src/cli/host-install.js'
import { readHostDistro, type HostDistro } from '../../src/host/host-distro.js'
import { allPackages, packageOn, requirements, type RequirementCheck, type RequirementId } from '../../src/host/requirements.js'

// doctor's other probes boot QEMU or ask libvirt; here they answer at once.
vi.mock('../../src/host/accelerator.js', () => ({ acceleratorVerdict: async () => ({ accel: 'tcg', reason: 'mocked', probed: false }) }))
vi.mock('../../src/hypervisor/qemu/disk-io.js', () => ({ diskIoVerdict: async () => ({ mode: 'threads', reason: 'mocked' }) }))
vi.mock('../../src/cli/libvirt-check.js', () => ({ checkLibvirt: async () => ({ ok: true, required: false, lines: ['libvirt: mocked'] }) }))
const absent = vi.hoisted(() => ({ ids: new Set<string>() }))
vi.mock('../../src/host/requirements.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/host/requirements.js')>()
  return {
    ...original,
    checkRequirements: async (groups: Parameters<typeof original.checkRequirements>[0] = ['run']): Promise<RequirementCheck[]> =>
      original.requirements.filter((requirement) => groups.includes(requirement.group ?? 'run')).map((requirement) => ({ requirement, path: absent.ids.has(requirement.id) ? undefined : `/found/${requirement.id}` })),
  }
})

// As os-release(5) ships them on the runners the CI recipes name.
const osRelease = {
  debian12: 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
  ubuntu2204: 'PRETTY_NAME="Ubuntu 22.04.5 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION="22.04.5 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=jammy\n',
  ubuntu2404: 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION="24.04.1 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=noble\nLOGO=ubuntu-logo\n',
  fedora: 'NAME="Fedora Linux"\nVERSION="40 (Container Image)"\nID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40 (Container Image)"\n',
  mint: "NAME='Linux Mint'\nVERSION=\"21.3 (Virginia)\"\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\nPRETTY_NAME=\"Linux Mint 21.3\"\n",
}

let dir: string
const paths: Record<keyof typeof osRelease, string> = {} as never

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vmharness-distro-'))
  for (const [name, text] of Object.entries(osRelease)) {
    paths[name as keyof typeof osRelease] = join(dir, name)
    await writeFile(join(dir, name), text)
  }
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('the host distribution', () => {
  it('reads Debian and Ubuntu from os-release, and takes no derivative for either', async () => {
    expect(await readHostDistro(paths.debian12)).toEqual({ id: 'debian', name: 'Debian GNU/Linux 12 (bookworm)', family: 'debian' })
    expect(await readHostDistro(paths.ubuntu2204)).toEqual({ id: 'ubuntu', name: 'Ubuntu 22.04.5 LTS', family: 'ubuntu' })
    expect(await readHostDistro(paths.ubuntu2404)).toEqual({ id: 'ubuntu', name: 'Ubuntu 24.04.1 LTS', family: 'ubuntu' })
    expect(await readHostDistro(paths.fedora)).toEqual({ id: 'fedora', name: 'Fedora Linux 40 (Container Image)', family: undefined })
    expect((await readHostDistro(paths.mint)).family).toBeUndefined()
    expect(await readHostDistro(join(dir, 'absent'))).toEqual({ id: 'unknown', name: `an unknown system (no ${join(dir, 'absent')})`, family: undefined })
  })
})

describe('package names by distribution', () => {
  it("keeps Debian's names on Debian", () => {
    expect(requirements.map((requirement) => packageOn(requirement, 'debian'))).toEqual(requirements.map((requirement) => ({ name: requirement.debianPackage })))
  })

  it("uses Debian's names on Ubuntu, except the guest kernel, which no Ubuntu package provides", () => {
    const onUbuntu = new Map(requirements.map((requirement) => [requirement.id, packageOn(requirement, 'ubuntu')]))
    const kernel = onUbuntu.get('guest-kernel')
    expect(kernel).toEqual({ none: expect.stringContaining('VMHARNESS_KERNEL') })
    expect(kernel && 'none' in kernel && kernel.none).toContain('/boot/vmlinuz-*-cloud-amd64')
    onUbuntu.delete('guest-kernel')
    const names = [...onUbuntu.values()].map((found) => ('name' in found ? found.name : found.none))
    expect(new Set(names)).toEqual(new Set(allPackages(['run', 'test']).filter((name) => name !== 'linux-image-cloud-amd64')))
  })
})

function checksMissing(...ids: RequirementId[]): RequirementCheck[] {
  return requirements.filter((requirement) => (requirement.group ?? 'run') === 'run').map((requirement) => ({ requirement, path: ids.includes(requirement.id) ? undefined : `/found/${requirement.id}` }))
}

const debian: HostDistro = { id: 'debian', name: 'Debian GNU/Linux 12 (bookworm)', family: 'debian' }
const ubuntu: HostDistro = { id: 'ubuntu', name: 'Ubuntu 24.04.1 LTS', family: 'ubuntu' }

describe('what doctor --install can install', () => {
  it("installs Debian's packages on Debian, each once", () => {
    const plan = planInstall(checksMissing('guest-kernel', 'dropbear', 'dropbearconvert', 'vde-switch'), { distro: debian, root: true, aptGet: '/usr/bin/apt-get' })
    expect(plan).toEqual({ kind: 'install', packages: ['vde2', 'linux-image-cloud-amd64', 'dropbear-bin'], cannot: [] })
  })

  it('installs the rest on Ubuntu and says plainly that it cannot install the guest kernel', () => {
    const plan = planInstall(checksMissing('guest-kernel', 'busybox-static', 'mmdebstrap'), { distro: ubuntu, root: true, aptGet: '/usr/bin/apt-get' })
    expect(plan.kind).toBe('install')
    if (plan.kind !== 'install') return
    expect(plan.packages).toEqual(['busybox-static', 'mmdebstrap'])
    expect(plan.cannot).toEqual([expect.stringMatching(/^cannot install a guest kernel \(\/boot\/vmlinuz-\*-cloud-amd64\) on Ubuntu 24\.04\.1 LTS: Ubuntu has no linux-image-cloud-amd64/)])
  })

  it('refuses on an unknown distribution, naming what to install by hand', () => {
    const plan = planInstall(checksMissing('vde-switch', 'dropbear'), { distro: { id: 'fedora', name: 'Fedora Linux 40', family: undefined }, root: true, aptGet: undefined })
    expect(plan).toEqual({ kind: 'refuse', reason: 'vmharness doctor --install cannot install on Fedora Linux 40: it knows the package names of Debian and Ubuntu only; install these yourself: vde_switch; dropbear' })
  })

  it('refuses without apt-get, and when not root', () => {
    expect(planInstall(checksMissing('vde-switch'), { distro: debian, root: true, aptGet: undefined })).toEqual({
      kind: 'refuse',
      reason: 'vmharness doctor --install cannot install on Debian GNU/Linux 12 (bookworm): apt-get is not on this host; install these yourself: vde2',
    })
    expect(planInstall(checksMissing('vde-switch', 'qemu-img'), { distro: ubuntu, root: false, aptGet: '/usr/bin/apt-get' })).toEqual({ kind: 'refuse', reason: 'vmharness doctor --install must run as root to install: qemu-utils vde2' })
  })

  it('has nothing to refuse on Ubuntu when only the kernel is missing, and still says so', () => {
    expect(planInstall(checksMissing('guest-kernel'), { distro: ubuntu, root: false, aptGet: undefined })).toEqual({ kind: 'install', packages: [], cannot: [expect.stringContaining('cannot install a guest kernel')] })
  })
})

describe('vmharness doctor --install by distribution', () => {
  async function runDoctor(release: keyof typeof osRelease, missing: RequirementId[], root = true) {
    absent.ids = new Set(missing)
    const lines: string[] = []
    const aptCalls: string[][] = []
    const code = await doctor({
      install: true,
      write: (line) => lines.push(line),
      installer: { osReleasePath: paths[release], isRoot: () => root, findAptGet: async () => '/usr/bin/apt-get', apt: async (_aptGet, args) => void aptCalls.push(args) },
    })
    return { code, output: lines.join('\n'), aptCalls }
  }

  it('on Debian 12 installs the Debian packages and reports as before', async () => {
    const { code, output, aptCalls } = await runDoctor('debian12', ['vde-switch', 'guest-kernel'])
    expect(aptCalls).toEqual([['update'], ['install', '-y', '--no-install-recommends', 'vde2', 'linux-image-cloud-amd64']])
    expect(output).toContain('installing: vde2 linux-image-cloud-amd64\nvmharness doctor\n')
    expect(output).toMatch(/ {2}MISSING {2}vde_switch +Debian package vde2, for networks between machines/)
    expect(output).toContain('\nmissing Debian packages: vde2 linux-image-cloud-amd64\ninstall them (as root): apt-get update && apt-get install -y --no-install-recommends vde2 linux-image-cloud-amd64')
    expect(output).toContain('  no Debian cloud kernel (an Ubuntu runner, say)? set VMHARNESS_KERNEL=/path/to/vmlinuz')
    expect(code).toBe(1)
  })

  it('on Ubuntu installs what Ubuntu has and names what it cannot install, at the start and at the end', async () => {
    const { code, output, aptCalls } = await runDoctor('ubuntu2204', ['vde-switch', 'guest-kernel'])
    expect(aptCalls).toEqual([['update'], ['install', '-y', '--no-install-recommends', 'vde2']])
    expect(output.split('\n')[0]).toMatch(/^cannot install a guest kernel .* on Ubuntu 22\.04\.5 LTS: Ubuntu has no linux-image-cloud-amd64/)
    expect(output).toMatch(/ {2}MISSING {2}vde_switch +Ubuntu package vde2, for networks between machines/)
    expect(output).toMatch(/ {2}MISSING {2}a guest kernel \(\/boot\/vmlinuz-\*-cloud-amd64\) +no Ubuntu package \(see below\), for the tiny image/)
    expect(output).toContain('\nmissing Ubuntu packages: vde2\n')
    expect(output).toMatch(/\nno Ubuntu package provides a guest kernel .*: .*set VMHARNESS_KERNEL=/)
    expect(output).not.toContain('Debian package')
    expect(code).toBe(1)
  })

  it('refuses, installing nothing, on an unknown distribution and when not root', async () => {
    const fedora = await runDoctor('fedora', ['vde-switch'])
    expect(fedora.output).toBe('vmharness doctor --install cannot install on Fedora Linux 40 (Container Image): it knows the package names of Debian and Ubuntu only; install these yourself: vde_switch')
    expect(fedora.aptCalls).toEqual([])
    expect(fedora.code).toBe(2)
    const notRoot = await runDoctor('ubuntu2404', ['vde-switch'], false)
    expect(notRoot.output).toBe('vmharness doctor --install must run as root to install: vde2')
    expect(notRoot.code).toBe(2)
  })
})
