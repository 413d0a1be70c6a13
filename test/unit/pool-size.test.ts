import { describe, expect, it } from 'vitest'
import { defaultPoolSize, type PoolHost } from '../../src/machine/pool-size.js'

describe('defaultPoolSize: one reload beside the test, more where cores allow', () => {
  const hosts: [string, PoolHost, number][] = [
    ['2 cores, TCG, tiny (1 vCPU): one spare core, one reload', { cores: 2, accel: 'tcg', guestCpus: 1 }, 1],
    ["2 cores, TCG, Debian (2 vCPUs): the test's guest mostly waits, one reload fits beside it", { cores: 2, accel: 'tcg', guestCpus: 2 }, 1],
    ['1 core, TCG, tiny: no pool', { cores: 1, accel: 'tcg', guestCpus: 1 }, 0],
    ['3 cores, TCG, 2 vCPUs: one spare core is not a second reload of 2 vCPUs', { cores: 3, accel: 'tcg', guestCpus: 2 }, 1],
    ['6 cores, TCG, 2 vCPUs: room for two', { cores: 6, accel: 'tcg', guestCpus: 2 }, 2],
    ['4 cores, TCG, 2 vCPUs: room for one more reload', { cores: 4, accel: 'tcg', guestCpus: 2 }, 1],
    ['4 cores, TCG, 1 vCPU: capped at 2', { cores: 4, accel: 'tcg', guestCpus: 1 }, 2],
    ['16 cores, TCG, 4 vCPUs: capped at 2', { cores: 16, accel: 'tcg', guestCpus: 4 }, 2],
    ['guest with more vCPUs than the host has cores, TCG', { cores: 2, accel: 'tcg', guestCpus: 4 }, 0],
    ['2 cores, KVM, 2 vCPUs: reloads are cheap, keep one', { cores: 2, accel: 'kvm', guestCpus: 2 }, 1],
    ['2 cores, KVM, 1 vCPU', { cores: 2, accel: 'kvm', guestCpus: 1 }, 2],
    ['64 cores, KVM, 8 vCPUs', { cores: 64, accel: 'kvm', guestCpus: 8 }, 2],
    ['no-op backend', { cores: 1, accel: 'none', guestCpus: 1 }, 2],
  ]
  it.each(hosts)('%s', (_what, host, size) => {
    expect(defaultPoolSize(host)).toBe(size)
  })
})
