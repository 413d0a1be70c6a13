import { describe, expect, it } from 'vitest'
import { HostError } from '../../src/errors.js'
import { checkVdeSocketPaths, longestVdeSocketPath, maxSocketPathBytes } from '../../src/network/vde-socket-path.js'

/** A data socket directory whose path is `bytes` long. */
function dirOf(bytes: number): string {
  const base = '/tmp/vmharness-0/run-1234-abcdef/net-1/sw'
  return `/${'d'.repeat(bytes - base.length - 1)}${base}`
}

describe("vde's socket paths", () => {
  it("are longest at libvdeplug's own end: the directory, then /.<7-digit pid>-<5 digits>", () => {
    expect(longestVdeSocketPath('/r/net-1/sw')).toBe('/r/net-1/sw/.9999999-00000')
  })

  it('fit up to 107 bytes, and past that are a HostError that names the path and what to set', () => {
    const fits = dirOf(maxSocketPathBytes - 15)
    expect(Buffer.byteLength(longestVdeSocketPath(fits))).toBe(107)
    expect(() => checkVdeSocketPaths(fits, '/run')).not.toThrow()
    const tooLong = dirOf(maxSocketPathBytes - 14)
    const error = (() => {
      try {
        checkVdeSocketPaths(tooLong, '/deep/run')
      } catch (caught) {
        return caught
      }
    })()
    expect(error).toBeInstanceOf(HostError)
    expect((error as HostError).message).toContain(`${tooLong}/.9999999-00000`)
    expect((error as HostError).message).toContain('up to 108 bytes')
    expect((error as HostError).message).toContain('holds at most 107')
    expect((error as HostError).fix).toMatch(/VMHARNESS_RUN_ROOT \(or TMPDIR\).*1 bytes shorter/)
  })

  it('count bytes, not characters', () => {
    expect(() => checkVdeSocketPaths(dirOf(maxSocketPathBytes - 15).replace('d', 'é'), '/run')).toThrow(HostError)
  })
})
