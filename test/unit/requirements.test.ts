import { describe, expect, it } from 'vitest'
import { allPackages, checkRequirements } from '../../src/host/requirements.js'

describe('requirement groups', () => {
  it("keeps the tests' own packages out of what vmharness needs, and lists them with --tests", () => {
    const testOnly = ['syslinux', 'syslinux-common', 'dosfstools', 'mtools']
    expect(allPackages()).not.toEqual(expect.arrayContaining([expect.stringMatching(/^(syslinux|syslinux-common|dosfstools|mtools)$/)]))
    expect(allPackages(['run', 'test'])).toEqual([...allPackages(), ...testOnly])
  })

  it('checks only the groups asked for', async () => {
    expect((await checkRequirements(['test'])).map((check) => check.requirement.id)).toEqual(['syslinux', 'syslinux-mbr', 'mkfs-fat', 'mtools'])
    expect((await checkRequirements()).map((check) => check.requirement.group ?? 'run')).not.toContain('test')
  })
})
