import { existsSync } from 'node:fs'
import { copyFile, mkdir, readdir, truncate } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SnapshotError, SnapshotMismatchError } from '../../src/errors.js'
import { locateRequired } from '../../src/host/requirements.js'
import { runDir } from '../../src/host/run-dir.js'
import { diskIoVerdict } from '../../src/hypervisor/qemu/disk-io.js'
import { QemuHypervisor } from '../../src/hypervisor/qemu/qemu-hypervisor.js'
import { Vm } from '../../src/machine/vm.js'
import { qemuCommandLinesMentioning, qemuProcessesMentioning } from '../helpers/host-state.js'

/** Leaves a mark in every kind of state a test can change: disk, tmpfs, processes, kernel settings. */
async function dirtyEverything(vm: Vm): Promise<void> {
  await vm.succeed('echo dirty > /root/on-disk && echo dirty > /tmp/in-tmpfs && sysctl -w net.ipv4.ip_forward=1')
  await vm.succeed('sleep 4242 >/dev/null 2>&1 &')
}

async function expectClean(vm: Vm): Promise<void> {
  expect(await vm.succeed('cat /root/on-disk')).toBe('golden\n')
  await vm.fail('test -e /tmp/in-tmpfs')
  await vm.fail('pgrep -f "sleep 4242"')
  expect((await vm.succeed('sysctl -n net.ipv4.ip_forward')).trim()).toBe('0')
}

/**
 * Guest wall clock minus host wall clock, in seconds. busybox's `date` shows whole seconds only, so
 * the guest waits for its clock to tick over and says which second began; the host notes when
 * that arrives (the few ms of latency are the measurement's error).
 */
async function clockSkew(vm: Vm): Promise<number> {
  let tickedAt = 0
  const output = await vm.exec('a=$(date +%s); while [ "$(date +%s)" = "$a" ]; do :; done; date +%s', {
    onStdout: () => {
      tickedAt = Date.now()
    },
  })
  return Number(output.stdout.trim()) - tickedAt / 1000
}

/** The -blockdev option of the VM's own disk file, as its QEMU process runs it. */
async function diskOptionsOf(vm: Vm): Promise<string | undefined> {
  const [process] = await qemuCommandLinesMentioning(vm.handle.id)
  return process?.argv.find((arg) => arg.includes('node-name=disk0-file'))
}

describe('snapshots of the tiny guest', () => {
  let vm: Vm

  beforeAll(async () => {
    vm = await Vm.start({ image: 'tiny', name: 'snapshots' })
    await vm.succeed('echo golden > /root/on-disk')
  })

  afterAll(async () => {
    await vm?.destroy()
  })

  it('an internal snapshot brings back disk, tmpfs, processes and sysctls', async () => {
    await vm.snapshot('clean')
    await dirtyEverything(vm)
    await vm.restore('clean')
    await expectClean(vm)
    await dirtyEverything(vm)
    await vm.restore('clean')
    await expectClean(vm)
    expect((await vm.listSnapshots()).map((s) => [s.name, s.kind])).toEqual([['clean', 'internal']])
  })

  it("uses the disk I/O mode the host probe chose, and restores the same with QEMU's thread pool", async () => {
    const probed = await diskIoVerdict(await locateRequired('qemu-system'))
    expect(await diskOptionsOf(vm)).toContain(`aio=${probed.mode}`)
    // A clone of this VM rather than a second boot: the saved state's golden file comes with it.
    const saved = await vm.snapshot('for-threads', { kind: 'external' })
    await using threaded = await Vm.start({ restoreFrom: saved.path, name: 'threads-io' }, { hypervisor: new QemuHypervisor({ diskIo: 'threads' }) })
    expect(await diskOptionsOf(threaded)).toContain('aio=threads')
    await threaded.snapshot('clean')
    await dirtyEverything(threaded)
    await threaded.restore('clean')
    await expectClean(threaded)
  })

  it('restoring an unknown snapshot is a typed error naming the ones there are', async () => {
    await expect(vm.restore('no-such')).rejects.toThrow(SnapshotError)
    await expect(vm.restore('no-such')).rejects.toThrow(/it has: 'clean'/)
    expect(await vm.succeed('echo still here')).toBe('still here\n')
  })

  it('sets the guest clock from the host after a restore made 10 s after the save', async () => {
    await vm.snapshot('clock')
    await sleep(10_000)
    await vm.restore('clock')
    const skew = await clockSkew(vm)
    expect(Math.abs(skew)).toBeLessThan(1)
  })

  it('an external snapshot clones: two VMs at once from one saved state, each with its own disk', async () => {
    const saved = await vm.snapshot('golden', { kind: 'external' })
    expect(saved.path && existsSync(join(saved.path, 'snapshot.json'))).toBeTruthy()
    const [a, b] = await Promise.all([Vm.start({ image: 'tiny', restoreFrom: saved.path }), Vm.start({ image: 'tiny', restoreFrom: saved.path })])
    try {
      await a.succeed('echo from-a > /root/on-disk')
      expect(await b.succeed('cat /root/on-disk')).toBe('golden\n')
      expect(await a.succeed('cat /root/on-disk')).toBe('from-a\n')
      expect(a.handle.ssh?.port).not.toBe(b.handle.ssh?.port)
    } finally {
      await Promise.all([a.destroy(), b.destroy()])
    }
    // The source VM runs on, and can go back to the external state in place (a new process).
    await dirtyEverything(vm)
    await vm.restore('golden')
    await expectClean(vm)
  })

  it('refuses to restore onto other devices before starting anything', async () => {
    const saved = (await vm.listSnapshots()).find((s) => s.name === 'golden')
    expect(saved?.path).toBeTruthy()
    const before = await readdir((await runDir()).path)
    const processesBefore = await qemuProcessesMentioning('vmharness')
    const attempt = Vm.start({ image: 'tiny', memory: 512, restoreFrom: saved?.path })
    await expect(attempt).rejects.toThrow(SnapshotMismatchError)
    await expect(Vm.start({ image: 'tiny', cpus: 2, restoreFrom: saved?.path })).rejects.toThrow(/cpus: saved with 1, asked for 2/)
    expect(await readdir((await runDir()).path)).toEqual(before)
    expect(await qemuProcessesMentioning('vmharness')).toEqual(processesBefore)
  })

  it('refuses a saved state whose RAM file was cut short', async () => {
    const saved = (await vm.listSnapshots()).find((s) => s.name === 'golden')
    const damaged = join((await runDir()).path, 'damaged-snapshot')
    await mkdir(damaged)
    for (const file of await readdir(saved?.path ?? '')) await copyFile(join(saved?.path ?? '', file), join(damaged, file))
    await truncate(join(damaged, 'state.bin'), 1024)
    await expect(Vm.start({ image: 'tiny', restoreFrom: damaged })).rejects.toThrow(/state.bin .* is 1024 bytes, expected .*truncated/)
  })
})
