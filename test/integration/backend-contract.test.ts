import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { runDir } from '../../src/host/run-dir.js'
import { hypervisorFor } from '../../src/hypervisor/router.js'
import { backendContract } from '../contract/backend-contract.js'
import { qemuProcessesMentioning } from '../helpers/host-state.js'

// The QEMU backend against the contract every backend meets (test/contract/backend-contract.ts).
backendContract({
  label: 'qemu',
  hypervisor: () => hypervisorFor('qemu'),
  spec: { image: 'tiny' },
  leftovers: async (handle) => {
    const vmDir = join((await runDir()).path, `vm-${handle.id}`)
    const processes = (await qemuProcessesMentioning(vmDir)).map((pid) => `QEMU pid ${pid}`)
    return [...processes, ...(existsSync(vmDir) ? [vmDir] : [])]
  },
})
