import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { guestRefreshProgramBase64 } from '../../src/machine/guest-refresh-program.js'
import { timespecNow } from '../../src/machine/guest-refresh.js'
import { skipBecause } from '../helpers/skip.js'

function hasBinutils(): boolean {
  try {
    execFileSync('as', ['--version'], { stdio: 'ignore' })
    execFileSync('ld', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

describe('the guest refresh program', () => {
  const program = Buffer.from(guestRefreshProgramBase64, 'base64')

  it('is a static x86-64 Linux executable', () => {
    expect(program.subarray(0, 4).toString('latin1')).toBe('\x7fELF')
    expect(program[4]).toBe(2) // 64-bit
    expect(program.readUInt16LE(18)).toBe(0x3e) // x86-64
    expect(program.readUInt16LE(16)).toBe(2) // ET_EXEC: no interpreter, no libraries
  })

  it('is exactly what images/guest-tools/guest-refresh.S assembles to', (context) => {
    if (!hasBinutils()) skipBecause(context, 'needs binutils (as, ld) to assemble the source')
    const work = mkdtempSync(join(tmpdir(), 'vmharness-refresh-'))
    try {
      execFileSync('as', ['--64', '-o', join(work, 'r.o'), 'images/guest-tools/guest-refresh.S'])
      execFileSync('ld', ['-N', '-s', '--build-id=none', '-z', 'noseparate-code', '--no-warn-rwx-segments', '-o', join(work, 'r'), join(work, 'r.o')])
      expect(readFileSync(join(work, 'r')).equals(program)).toBe(true)
    } finally {
      rmSync(work, { recursive: true, force: true })
    }
  })

  it('runs here as on a guest: takes 64 bytes of entropy, reseeds, asks for the time, and fails with 7 when none comes', () => {
    // The host is the same architecture and kernel family; the clock step is never reached here.
    const work = mkdtempSync(join(tmpdir(), 'vmharness-refresh-'))
    try {
      const path = join(work, 'refresh')
      writeFileSync(path, program, { mode: 0o700 })
      const run = (input: Buffer) => {
        try {
          return { stdout: execFileSync(path, { input }).toString(), status: 0 }
        } catch (error) {
          const failed = error as { status: number; stdout: Buffer }
          return { stdout: failed.stdout.toString(), status: failed.status }
        }
      }
      expect(run(Buffer.alloc(10))).toEqual({ stdout: '', status: 2 })
      const reseed = run(Buffer.alloc(64))
      // Without CAP_SYS_ADMIN the kernel refuses the entropy (4); as root it reseeds and asks for the time.
      expect([{ stdout: 'R', status: 7 }, { stdout: '', status: 4 }]).toContainEqual(reseed)
    } finally {
      rmSync(work, { recursive: true, force: true })
    }
  })
})

describe('timespecNow', () => {
  it('encodes milliseconds since the epoch as little-endian seconds and nanoseconds', () => {
    const encoded = timespecNow(1_700_000_000_123.456)
    expect(encoded.readBigInt64LE(0)).toBe(1_700_000_000n)
    expect(Number(encoded.readBigInt64LE(8))).toBeCloseTo(123_456_000, -3)
  })

  it('never encodes a full second of nanoseconds', () => {
    expect(Number(timespecNow(1_999.9999999).readBigInt64LE(8))).toBeLessThan(1_000_000_000)
  })
})
