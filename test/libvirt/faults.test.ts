import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { beforeEach, describe, expect, it } from 'vitest'
import { BootTimeoutError, HostError, HypervisorError } from '../../src/errors.js'
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/libvirt-hypervisor.js'
import { waitForBoot } from '../../src/machine/boot-wait.js'
import { Vm } from '../../src/machine/vm.js'
import { resolveSpec } from '../../src/spec/vm-spec.js'
import { skipBecause } from '../helpers/skip.js'
import { libvirtObjectsNamed, sandbox, sandboxMissing, virsh } from '../helpers/libvirt-sandbox.js'

const libvirt = new LibvirtHypervisor()
const tiny = { image: 'tiny', backend: 'libvirt' as const, libvirtUri: sandbox?.localUri }

beforeEach((context) => {
  if (sandboxMissing) skipBecause(context, sandboxMissing)
})

describe('libvirt: bad input and faults get typed errors that say what to fix', () => {
  it('an unreachable remote URI: a HostError naming the URI and what to check', async () => {
    const error = await Vm.start({ ...tiny, libvirtUri: 'qemu+ssh://root@127.0.0.1:1/system' }, { hypervisor: libvirt }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(HostError)
    expect((error as Error).message).toMatch(/cannot reach libvirt at qemu\+ssh:\/\/root@127\.0\.0\.1:1\/system: .*(refused|closed|Connection)/i)
    expect((error as HostError).fix).toMatch(/sshd runs there/)
  })

  it('a daemon that is not running: a HostError that says to start it', async () => {
    const error = await Vm.start({ ...tiny, libvirtUri: 'qemu:///system?socket=/nonexistent/libvirt-sock' }, { hypervisor: libvirt }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(HostError)
    expect((error as Error).message).toMatch(/the libvirt daemon at qemu:\/\/\/system\?socket=\/nonexistent\/libvirt-sock does not answer: .*No such file/)
    expect((error as HostError).fix).toMatch(/systemctl start libvirtd/)
  })

  it('a domain of that name already on the host: a HypervisorError naming it, and the other domain is left alone', async () => {
    const handle = await libvirt.prepare(resolveSpec(tiny))
    const name = /<name>([^<]+)<\/name>/.exec(libvirt.domainXml(handle))?.[1] as string
    const clashing = `/tmp/clash-${handle.id}.xml`
    const { writeFile, rm } = await import('node:fs/promises')
    await writeFile(clashing, libvirt.domainXml(handle).replace(/<uuid>[^<]+<\/uuid>/, ''))
    await virsh('define', clashing)
    try {
      const error = await libvirt.start(handle).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(HypervisorError)
      expect((error as Error).message).toContain(`a domain named ${name} already exists on ${sandbox?.localUri}`)
      expect(await virsh('list', '--all', '--name')).toContain(name)
    } finally {
      await virsh('undefine', name)
      await libvirt.destroy(handle)
      await rm(clashing, { force: true })
    }
  })

  it('a pool without room for the image: a HostError naming the pool, its free space and what it needs', async () => {
    await virsh('pool-define-as', 'small', 'dir', '--target', '/var/lib/libvirt/small')
    await virsh('pool-build', 'small')
    const { execFileSync } = await import('node:child_process')
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', '/var/lib/libvirt/small'])
    await virsh('pool-start', 'small')
    process.env.VMHARNESS_LIBVIRT_POOL = 'small'
    try {
      const error = await Vm.start(tiny, { hypervisor: new LibvirtHypervisor() }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(HostError)
      expect((error as Error).message).toMatch(/libvirt pool 'small' on qemu:\/\/\/system has \d+ MiB free, but uploading vmh-img-[0-9a-f]+-\w+ needs \d+ MiB/)
      expect((error as HostError).fix).toMatch(/VMHARNESS_LIBVIRT_POOL/)
    } finally {
      delete process.env.VMHARNESS_LIBVIRT_POOL
      await virsh('pool-destroy', 'small').catch(() => '')
      await virsh('pool-undefine', 'small').catch(() => '')
      execFileSync('umount', ['/var/lib/libvirt/small'])
    }
  })

  it('a guest whose lease never appears: the boot times out saying so, with the console tail', async () => {
    const handle = await libvirt.prepare(resolveSpec({ ...tiny, bootTimeoutMs: 15_000 }))
    try {
      // The network's DHCP server goes away before the guest asks: no lease can appear.
      const network = /<source network='([^']+)'/.exec(libvirt.domainXml(handle))?.[1] as string
      const pid = Number((await readFile(`/run/libvirt/network/${network}.pid`, 'utf8')).trim())
      process.kill(pid, 'SIGKILL')
      await libvirt.start(handle)
      const error = await waitForBoot(libvirt, handle, handle.ssh!, { timeoutMs: 15_000 }).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(BootTimeoutError)
      expect((error as Error).message).toMatch(/not ready after 15\.0 s \(last stage reached: connecting SSH\)/)
      expect(String((error as Error & { cause?: Error }).cause?.message)).toMatch(/no DHCP lease yet for 52:54:00:/)
      expect((error as BootTimeoutError).consoleTail).toMatch(/\S/)
      const direct = await libvirt.guestIp(handle).catch((e: unknown) => e)
      expect(direct).toBeInstanceOf(HypervisorError)
      expect((direct as Error).message).toMatch(/no DHCP lease for its NIC \(52:54:00:[0-9a-f:]+\) on network vmh-/)
    } finally {
      await libvirt.destroy(handle)
    }
  })

  it('libvirtd restarted mid-test: the VM survives, its commands and snapshots work again once the daemon is back', async () => {
    await using vm = await Vm.start(tiny, { hypervisor: libvirt })
    await vm.snapshot('before-restart')
    const daemon = Number((await readFile('/run/libvirtd.pid', 'utf8').catch(() => '')).trim()) || Number((await import('node:child_process')).execFileSync('pidof', ['libvirtd']).toString().trim())
    process.kill(daemon, 'SIGTERM')
    const restarted = spawn('libvirtd', [], { detached: true, stdio: 'ignore' })
    restarted.unref()
    expect(await vm.succeed('echo alive')).toBe('alive\n')
    expect(await vm.state()).toMatchObject({ status: 'running' })
    await vm.succeed('touch /root/after-restart')
    await vm.restore('before-restart')
    await vm.fail('test -e /root/after-restart')
  })

  it('a killed run: its domain, network and volumes are swept by the next start on that host', async () => {
    // The built package (npm ci builds it), started the way a user's process would.
    const child = spawn(process.execPath, ['--input-type=module', '-e', killedRunScript], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env })
    const domain = await new Promise<string>((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        const match = /DOMAIN (vmh-[0-9a-f]+-[0-9a-f]+)/.exec(out)
        if (match) resolve(match[1] as string)
      })
      child.on('exit', () => reject(new Error(`the child ended first: ${out}`)))
    })
    const runPrefix = domain.split('-').slice(0, 2).join('-') + '-'
    expect(await libvirtObjectsNamed(runPrefix)).toEqual(expect.arrayContaining([`domain ${domain}`, `network ${domain}`]))
    const ended = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await ended
    const { sweepDeadRuns } = await import('../../src/hypervisor/libvirt/run-tag.js')
    const { connection, pool } = await libvirt.host(libvirt.target(resolveSpec(tiny)))
    const report = await sweepDeadRuns(connection, pool)
    expect(report.domains).toContain(domain)
    expect(await libvirtObjectsNamed(runPrefix)).toEqual([])
  })
})

const killedRunScript = `
import { Vm } from '${process.cwd()}/dist/src/index.js'
const vm = await Vm.start({ image: 'tiny', backend: 'libvirt' })
const xml = vm.hypervisor.domainXml(vm.handle)
console.log('DOMAIN ' + /<name>([^<]+)<\\/name>/.exec(xml)[1])
setInterval(() => undefined, 1000)
`
