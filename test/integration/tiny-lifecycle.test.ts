import { existsSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { BootTimeoutError, ImageError, SpecError } from '../../src/errors.js'
import { runDir } from '../../src/host/run-dir.js'
import { Vm } from '../../src/machine/vm.js'
import { qemuProcessesMentioning } from '../helpers/host-state.js'

describe('tiny guest lifecycle', () => {
  it('stops gracefully (the guest powers off through ACPI), then destroy leaves no process, socket or file, and both are safe twice', async () => {
    const vm = await Vm.start({ image: 'tiny', name: 'lifecycle' })
    const vmDir = `${(await runDir()).path}/vm-${vm.handle.id}`
    expect(await readdir(vmDir)).toEqual(expect.arrayContaining(['disk-0.qcow2', 'seed.iso', 'qmp.sock', 'console.sock', 'console.log', 'qemu.pid']))
    expect(await qemuProcessesMentioning(vmDir)).toHaveLength(1)
    await vm.stop(20_000)
    expect(await vm.state()).toMatchObject({ status: 'stopped' })
    // QEMU exits 0 on SIGTERM too: what proves a graceful stop is that it ended before any signal
    // was sent, and that the guest's kernel said it was powering off.
    expect(await vm.handle.exited).toMatchObject({ exitCode: 0, signal: null, requested: true, stopMethod: 'powerdown' })
    expect(await vm.consoleTail(20)).toMatch(/reboot: Power down/)
    await vm.stop()
    await vm.destroy()
    await vm.destroy()
    expect(existsSync(vmDir)).toBe(false)
    expect(await qemuProcessesMentioning(vmDir)).toEqual([])
    await expect(vm.exec('true')).rejects.toThrow(/destroyed/)
  })

  it('destroys a running VM at once through await using', async () => {
    let vmDir = ''
    {
      await using vm = await Vm.start({ image: 'tiny', name: 'disposed' })
      vmDir = `${(await runDir()).path}/vm-${vm.handle.id}`
      expect(await vm.succeed('echo up')).toBe('up\n')
    }
    expect(existsSync(vmDir)).toBe(false)
    expect(await qemuProcessesMentioning(vmDir)).toEqual([])
  })

  it('fails a guest that never becomes ready within its timeout, showing the last console lines', async () => {
    const before = await readdir((await runDir()).path)
    const started = Date.now()
    // No such init in the initramfs: the kernel cannot mount a root it has no driver for, panics, and stays there.
    const failure = await Vm.start({ image: 'tiny', name: 'never-boots', bootTimeoutMs: 15_000, kernelArgs: ['rdinit=/vmharness-missing-init', 'panic=0', 'loglevel=4'] }).catch((error: unknown) => error)
    const elapsed = Date.now() - started
    expect(failure).toBeInstanceOf(BootTimeoutError)
    expect((failure as BootTimeoutError).stage).toBe('waiting for the console ready marker')
    expect((failure as Error).message).toMatch(/not ready after 15\.0 s/)
    expect((failure as Error).message).toMatch(/last console lines:[\s\S]*Kernel panic/)
    expect(elapsed).toBeLessThan(15_000 + 10_000)
    expect(await readdir((await runDir()).path)).toEqual(before)
  })

  it('rejects bad specs with typed errors before any process starts', async () => {
    const before = await readdir((await runDir()).path)
    await expect(Vm.start({ image: { disk: '/nonexistent/disk.qcow2', kernel: '/nonexistent/vmlinuz' } })).rejects.toThrow(ImageError)
    await expect(Vm.start({ image: 'no-such-image' })).rejects.toThrow(/unknown image; use one of 'tiny'/)
    await expect(Vm.start({ image: 'tiny', memory: 0 })).rejects.toThrow(SpecError)
    await expect(Vm.start({ image: 'tiny', backend: 'hyperv' as never })).rejects.toThrow(/backend: must be one of/)
    expect(await readdir((await runDir()).path)).toEqual(before)
  })
})
