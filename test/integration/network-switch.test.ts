import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { isVmHarnessError, NetworkError, SpecError } from '../../src/errors.js'
import { findBinary } from '../../src/host/find-binary.js'
import { processIsAlive } from '../../src/host/process-alive.js'
import { locateRequired } from '../../src/host/requirements.js'
import { runsRoot, sweepStaleRuns } from '../../src/host/run-dir.js'
import { Network } from '../../src/index.js'
import { VdeMgmt, type SwitchPort } from '../../src/network/vde-mgmt.js'
import { startVdeSwitch } from '../../src/network/vde-switch.js'
import { processRunning, vdeSwitchesMentioning } from '../helpers/host-state.js'
import { skipBecause } from '../helpers/skip.js'
import { plugIn, type Plug } from '../helpers/vde-plug.js'

// Real vde_switch processes, no VMs: frames go in and out through vde_plug.

const open: Network[] = []
const plugs: Plug[] = []
const connections: VdeMgmt[] = []

afterEach(async () => {
  for (const plug of plugs.splice(0)) await plug.close()
  for (const mgmt of connections.splice(0)) mgmt.close()
  for (const network of open.splice(0)) await network.destroy()
})

async function create(options: Parameters<typeof Network.create>[0] = {}): Promise<Network> {
  const network = await Network.create(options)
  open.push(network)
  return network
}

function switchDir(network: Network): string {
  return dirname(network.switchSocket)
}

async function switchPid(network: Network): Promise<number> {
  return Number(await readFile(join(switchDir(network), 'vde.pid'), 'utf8'))
}

/** A management connection of the test's own, to read back what the network did to the switch. */
async function inspect(network: Network): Promise<VdeMgmt> {
  const mgmt = await VdeMgmt.connect(join(switchDir(network), 'mgmt'), { network: network.name, timeoutMs: 5000 })
  connections.push(mgmt)
  return mgmt
}

async function waitFor<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 5000): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined || Date.now() > deadline) return value
    await sleep(20)
  }
}

function vlansOf(ports: SwitchPort[]): Record<number, number> {
  return Object.fromEntries(ports.map((port) => [port.port, port.vlan]))
}

describe('Network', () => {
  it('runs its switch in a private directory of the run, and destroy leaves neither process nor directory', async () => {
    const network = await create({ name: 'office' })
    const dir = switchDir(network)
    const pid = await switchPid(network)
    expect(((await stat(dir)).mode & 0o777).toString(8)).toBe('700')
    expect((await readdir(dir)).sort()).toEqual(['mgmt', 'sw', 'vde.pid'])
    expect(await readdir(network.switchSocket)).toEqual(['ctl'])
    expect(await vdeSwitchesMentioning(dir)).toEqual([pid])
    expect((await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')).not.toContain('--daemon')

    await network.destroy()
    expect(await vdeSwitchesMentioning(dir)).toEqual([])
    expect(await processRunning(pid)).toBe(false)
    expect(existsSync(dir)).toBe(false)
    expect(await network.exited).toMatchObject({ requested: true, exitCode: 0 })
    await network.destroy()
    expect(() => network.assertAlive()).toThrow(NetworkError)
  })

  it('gives two open networks distinct indexes, and a destroyed one frees its index', async () => {
    const first = await create()
    const second = await create({ name: 'backbone' })
    expect(second.index).not.toBe(first.index)
    expect(second.switchSocket).not.toBe(first.switchSocket)
    expect(second.join('a').ipv4).toBe(`192.168.${second.index}.1`)
    // An index given may repeat (copies of one topology, each on its own switch), never on the same switch.
    const copy = await create({ index: first.index })
    expect(copy.index).toBe(first.index)
    expect(copy.switchSocket).not.toBe(first.switchSocket)
    await copy.destroy()
    await expect(Network.create({ index: 255 })).rejects.toThrow(SpecError)
    await expect(Network.create({ name: 'has space' })).rejects.toThrow(SpecError)
    const freed = first.index
    await first.destroy()
    await expect(Network.create({ signal: AbortSignal.abort() })).rejects.toThrow(/aborted/)
    const third = await create()
    expect(third.index).toBe(freed)
  })

  it('numbers the machines that join, the lowest free number unless one is asked for, and gives their addresses', async () => {
    const network = await create({ index: 7 })
    expect(network.join('a')).toEqual({ name: 'a', node: 1, mac: '52:54:00:12:07:01', ipv4: '192.168.7.1', ipv6: '2001:db8:7::1' })
    expect(network.join('b', 200).mac).toBe('52:54:00:12:07:c8')
    expect(network.join('c').node).toBe(2)
    expect(() => network.join('a')).toThrow(NetworkError)
    expect(() => network.join('d', 200)).toThrow(/number 200 is taken by 'b'/)
    expect(() => network.join('e', 255)).toThrow(SpecError)
    expect(network.members().map((member) => [member.name, member.node])).toEqual([
      ['a', 1],
      ['c', 2],
      ['b', 200],
    ])
    network.leave('a')
    network.leave('nobody')
    expect(network.join('f').node).toBe(1)
    for (let n = network.members().length; n < 254; n++) network.join(`m${n}`)
    expect(() => network.join('one-too-many')).toThrow(/all 254 machine numbers are taken/)
  })

  it("partitions with VLANs at the switch, ports that nothing has plugged into yet included, and heal puts every port back", async (context) => {
    const vdePlug = await findBinary('vde_plug')
    if (!vdePlug) skipBecause(context, 'vde_plug is missing: install vde2 (scripts/install-host-packages)')
    const network = await create()
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => network.join(name))
    const mgmt = await inspect(network)
    const plug = async (node: number) => {
      const plugged = await plugIn(vdePlug, network.switchSocket, node)
      plugs.push(plugged)
      await waitFor(async () => ((await mgmt.ports()).find((port) => port.port === node)?.active ? true : undefined))
      return plugged
    }
    const [plugA, plugB] = [await plug(a!.node), await plug(b!.node)]

    await network.partition(['a', 'b'], ['c'])
    expect(vlansOf(await mgmt.ports())).toEqual({ [a!.node]: 1, [b!.node]: 1, [c!.node]: 2 })
    // c plugs in after the partition was set: it lands in its group's VLAN all the same.
    const plugC = await plug(c!.node)
    expect((await mgmt.ports()).find((port) => port.port === c!.node)).toMatchObject({ active: true, vlan: 2 })
    const plugD = await plug(d!.node)
    plugA.broadcast(a!.mac, 'partitioned')
    expect(await waitFor(() => (plugB.received.includes('partitioned') ? true : undefined))).toBe(true)
    await sleep(200)
    expect(plugC.received).toEqual([])
    expect(plugD.received).toEqual([])
    plugD.broadcast(d!.mac, 'from the rest')
    await sleep(200)
    expect([plugA.received, plugB.received, plugC.received]).toEqual([[], ['partitioned'], []])

    await network.heal()
    expect(vlansOf(await mgmt.ports())).toEqual({ [a!.node]: 0, [b!.node]: 0, [c!.node]: 0, [d!.node]: 0 })
    plugA.broadcast(a!.mac, 'healed')
    expect(await waitFor(() => ([plugB, plugC, plugD].every((other) => other.received.includes('healed')) ? true : undefined))).toBe(true)
  })

  it('puts the port of a machine that leaves a partitioned network back, and a new partition moves the machines it no longer names', async () => {
    const network = await create()
    for (const name of ['a', 'b', 'c']) network.join(name)
    const mgmt = await inspect(network)
    await network.partition(['a'], ['b'])
    expect(vlansOf(await mgmt.ports())).toEqual({ 1: 1, 2: 2 })
    network.leave('b')
    expect(network.join('newcomer').node).toBe(2)
    // leave cannot wait for the switch: the port goes back in the background, before any other change.
    expect(await waitFor(async () => (vlansOf(await mgmt.ports())[2] === 0 ? true : undefined), 2000)).toBe(true)
    expect(vlansOf(await mgmt.ports())).toEqual({ 1: 1, 2: 0 })
    await network.partition(['c'])
    expect(vlansOf(await mgmt.ports())).toEqual({ 1: 0, 2: 0, 3: 1 })
  })

  it('refuses a partition that names a machine that has not joined, or one machine in two groups', async () => {
    const network = await create({ name: 'campus' })
    network.join('a')
    network.join('b')
    const unknown = await network.partition(['a'], ['ghost']).catch((error: unknown) => error)
    expect(unknown).toBeInstanceOf(NetworkError)
    expect(unknown).toMatchObject({ network: 'campus' })
    expect((unknown as Error).message).toContain("no machine 'ghost' has joined (members: a, b)")
    await expect(network.partition(['a', 'b'], ['b'])).rejects.toThrow(/'b' is named in groups 1 and 2/)
  })

  it('says the switch has died, naming the network, once it is killed', async () => {
    const network = await create({ name: 'fragile' })
    network.join('a')
    expect(() => network.assertAlive()).not.toThrow()
    process.kill(await switchPid(network), 'SIGKILL')
    expect(await network.exited).toMatchObject({ requested: false, signal: 'SIGKILL' })
    const error = (() => {
      try {
        network.assertAlive()
      } catch (caught) {
        return caught
      }
    })()
    expect(error).toBeInstanceOf(NetworkError)
    expect(error).toMatchObject({ network: 'fragile' })
    expect((error as Error).message).toMatch(/^network 'fragile': its vde_switch has died \(signal SIGKILL\)/)
    await expect(network.partition(['a'])).rejects.toThrow(NetworkError)
    await network.destroy()
    expect(existsSync(switchDir(network))).toBe(false)
  })
})

describe('startVdeSwitch', () => {
  it("reports a switch that ends before it answers, with the switch's own words", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmharness-vde-fails-'))
    try {
      await writeFile(join(dir, 'sw'), 'a file where the switch wants its socket directory')
      const tools = { setpriv: await locateRequired('setpriv'), vdeSwitch: await locateRequired('vde-switch') }
      const started = Date.now()
      const error = await startVdeSwitch(tools, dir, { network: 'broken' }).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(NetworkError)
      expect((error as Error).message).toMatch(/^network 'broken': vde_switch ended before it answered: exit code \d+: .*vde_switch: Could not bind to socket .*Not a directory/s)
      expect(Date.now() - started).toBeLessThan(5000)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('a run directory too deep for unix socket paths', () => {
  let deepRoot = ''
  const savedRoot = process.env.VMHARNESS_RUN_ROOT

  afterAll(async () => {
    if (savedRoot === undefined) delete process.env.VMHARNESS_RUN_ROOT
    else process.env.VMHARNESS_RUN_ROOT = savedRoot
    // The mkdtemp directory above the deep one goes too.
    if (deepRoot) await rm(dirname(deepRoot), { recursive: true, force: true })
  })

  it('is refused with a HostError that names the path and VMHARNESS_RUN_ROOT, before any switch starts', async () => {
    deepRoot = join(await mkdtemp(join(tmpdir(), 'vmharness-deep-')), 'd'.repeat(60))
    await mkdir(deepRoot, { mode: 0o700 })
    process.env.VMHARNESS_RUN_ROOT = deepRoot
    // A fresh copy of the modules: this process's run directory is made once, under the root of the time.
    vi.resetModules()
    const fresh = await import('../../src/network/network.js')
    const error = await fresh.Network.create({ name: 'deep' }).catch((caught: unknown) => caught)
    expect(isVmHarnessError(error) && error.name).toBe('HostError')
    expect((error as Error).message).toContain(`${deepRoot}/run-`)
    expect((error as Error).message).toMatch(/\/net-[0-9a-f]{8}\/sw\/\.9999999-00000/)
    expect((error as Error).message).toContain('VMHARNESS_RUN_ROOT (or TMPDIR)')
    expect(await vdeSwitchesMentioning(deepRoot)).toEqual([])
    const runs = (await readdir(deepRoot)).filter((entry) => entry.startsWith('run-'))
    expect(runs).toHaveLength(1)
    expect((await readdir(join(deepRoot, runs[0]!))).filter((entry) => entry.startsWith('net-'))).toEqual([])
  })
})

describe('a process that owns a network and is SIGKILLed', () => {
  let out = ''

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'vmharness-network-owner-'))
  })
  afterAll(async () => {
    await rm(out, { recursive: true, force: true })
  })

  it('takes its vde_switch with it within 2 s, and the next sweep removes its directory', async () => {
    const run = execa(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--config', 'test/suites/plain.vitest.config.ts'], {
      reject: false,
      env: { SUITE_FILES: 'test/suites/network-owner.suite.ts', SUITE_OUT: out, FORCE_COLOR: '0' },
    })
    try {
      const running = await waitFor(async () => {
        const text = await readFile(join(out, 'running.json'), 'utf8').catch(() => '')
        return text ? (JSON.parse(text) as { switchPid: number; worker: number; runDir: string }) : undefined
      }, 60_000)
      expect(running, 'the suite never created its network').toBeDefined()
      if (!running) return
      expect(await vdeSwitchesMentioning(running.runDir)).toEqual([running.switchPid])
      const killedAt = Date.now()
      process.kill(running.worker, 'SIGKILL')
      const gone = await waitFor(async () => ((await processRunning(running.switchPid)) ? undefined : Date.now() - killedAt), 10_000)
      expect(gone, 'vde_switch outlived the process that owned it').toBeDefined()
      expect(gone).toBeLessThanOrEqual(2_000)
      expect(existsSync(running.runDir), 'a SIGKILLed owner cannot clean up: the sweep has to').toBe(true)
      // Until vitest reaps it, the killed worker is a zombie, which the sweep counts as an owner alive.
      await waitFor(() => (processIsAlive(running.worker) ? undefined : true), 5_000)
      const report = await sweepStaleRuns()
      expect(report.runsRemoved).toContain(running.runDir)
      expect(existsSync(running.runDir)).toBe(false)
      expect(await vdeSwitchesMentioning(runsRoot())).not.toContain(running.switchPid)
    } finally {
      run.kill('SIGKILL')
      await run
    }
  }, 90_000)
})
