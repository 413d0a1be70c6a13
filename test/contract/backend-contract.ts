import { isIP } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { HypervisorError, UnsupportedError } from '../../src/errors.js'
import { canSnapshot, canSuspend } from '../../src/hypervisor/capabilities.js'
import type { Hypervisor, VmHandle } from '../../src/hypervisor/hypervisor.js'
import { Vm } from '../../src/machine/vm.js'
import type { VmSpec } from '../../src/spec/vm-spec.js'
import { skipBecause } from '../helpers/skip.js'
import { withoutCapabilities } from '../helpers/without-capabilities.js'

/** One backend as the contract suite sees it. */
export interface ContractTarget {
  /** Shown in the suite's name. */
  label: string
  hypervisor: () => Hypervisor
  /** A small guest that boots on this backend. */
  spec: VmSpec
  /** What a destroyed VM could have left behind on this backend (processes, files): names of what is still there. */
  leftovers: (handle: VmHandle) => Promise<string[]>
  /** Why this backend cannot be tried here (every test then skips, saying so); undefined when it can. */
  unavailable?: string
}

/**
 * What every backend must do, stated once: boot, run commands, report a guest address the guest
 * really has, show its console, snapshot and restore, clone, stop and destroy without leaving
 * anything, and refuse what it cannot do with a typed error. Each backend's test file calls this.
 */
export function backendContract(target: ContractTarget): void {
  describe(`backend contract: ${target.label}`, () => {
    let vm: Vm

    beforeEach((context) => {
      if (target.unavailable) skipBecause(context, target.unavailable)
    })

    beforeAll(async () => {
      if (target.unavailable) return
      vm = await Vm.start({ ...target.spec, name: 'contract' }, { hypervisor: target.hypervisor() })
    })

    afterAll(async () => {
      await vm?.destroy()
    })

    it('boots, and the handle says which backend and accelerator run it', async () => {
      expect(vm.handle.backend).toBe(target.hypervisor().name)
      expect(['kvm', 'tcg']).toContain(vm.handle.accel)
      expect(await vm.state()).toMatchObject({ status: 'running' })
    })

    it('runs commands with their output, stderr and exit status', async () => {
      expect(await vm.exec('echo out; echo err >&2; exit 3')).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 3 })
    })

    it('reports a guest address that the guest really has', async () => {
      const address = await vm.hypervisor.guestIp(vm.handle)
      expect(isIP(address)).toBe(4)
      expect(await vm.succeed('ip -o addr show')).toContain(`inet ${address}/`)
    })

    it('shows the console: its tail holds what the guest printed while it booted', async () => {
      const tail = await vm.consoleTail(200)
      expect(tail.length).toBeGreaterThan(0)
      if (vm.handle.readyMarker) expect(tail).toContain(vm.handle.readyMarker)
    })

    it('snapshots and restores: changes after the snapshot are gone, and the guest answers again', async () => {
      expect(canSnapshot(vm.hypervisor)).toBe(true)
      await vm.succeed('echo before > /root/contract')
      await vm.snapshot('contract')
      await vm.succeed('echo after > /root/contract; touch /root/later')
      await vm.restore('contract')
      expect(await vm.succeed('cat /root/contract; test -e /root/later || echo no-later')).toBe('before\nno-later\n')
    })

    it('clones from an external snapshot: the clone runs beside its original, and each keeps its own changes', async () => {
      const saved = await vm.snapshot('contract-clone', { kind: 'external' })
      await using clone = await Vm.start({ restoreFrom: saved.path }, { hypervisor: target.hypervisor() })
      await clone.succeed('echo clone > /root/contract')
      await vm.succeed('echo original > /root/contract')
      expect(await clone.succeed('cat /root/contract')).toBe('clone\n')
      expect(await vm.succeed('cat /root/contract')).toBe('original\n')
    })

    it('stops, then destroy leaves nothing behind; both are safe twice, and a destroyed VM refuses work with a typed error', async () => {
      const doomed = await Vm.start({ ...target.spec, name: 'contract-doomed' }, { hypervisor: target.hypervisor() })
      await doomed.stop(20_000)
      expect(['stopped', 'crashed']).toContain((await doomed.state()).status)
      await doomed.stop()
      await doomed.destroy()
      await doomed.destroy()
      expect(await doomed.state()).toMatchObject({ status: 'destroyed' })
      expect(await target.leftovers(doomed.handle)).toEqual([])
      await expect(doomed.exec('true')).rejects.toThrow(HypervisorError)
      await expect(doomed.hypervisor.guestIp(doomed.handle)).rejects.toThrow(HypervisorError)
    })

    it('refuses what a backend does not offer with an UnsupportedError naming it', async () => {
      const bare = withoutCapabilities(target.hypervisor())
      expect(canSnapshot(bare) || canSuspend(bare)).toBe(false)
      await using plain = await Vm.start({ ...target.spec, name: 'contract-bare' }, { hypervisor: bare })
      await expect(plain.snapshot('x')).rejects.toThrow(UnsupportedError)
      await expect(plain.suspend()).rejects.toThrow(/does not support suspend/)
      await expect(plain.listSnapshots()).rejects.toThrow(UnsupportedError)
      expect(await plain.succeed('echo still-works')).toBe('still-works\n')
    })
  })
}
