import { describe, expect, it } from 'vitest'
import { ImageError, SpecError } from '../../src/errors.js'
import { parseDeb822Sources, parseOneLineSources, debianSources } from '../../src/images/apt-sources.js'
import { checkPackages } from '../../src/images/debian-image.js'
import { resolveSpec } from '../../src/spec/vm-spec.js'
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

describe('choosing an image', () => {
  it('takes a recipe with packages, and gives Debian more memory and vCPUs by default', () => {
    expect(resolveSpec({ image: { name: 'debian', packages: ['nginx'] } }, {})).toMatchObject({ name: 'debian', memory: 512, cpus: 2 })
    expect(resolveSpec({ image: 'debian', memory: 1024, cpus: 1 }, {})).toMatchObject({ memory: 1024, cpus: 1 })
    expect(resolveSpec({ image: 'tiny' }, {})).toMatchObject({ memory: 256, cpus: 1 })
  })

  it('refuses packages that are not a list of strings, naming the field', () => {
    expect(() => resolveSpec({ image: { name: 'debian', packages: 'nginx' as never } }, {})).toThrow(SpecError)
    expect(() => resolveSpec({ image: { name: 'debian', packages: 'nginx' as never } }, {})).toThrow(/^image.packages: /)
  })

  it('refuses package names apt would read as options or several words', () => {
    for (const bad of ['-o', 'nginx; rm -rf /', 'Nginx', '$(reboot)', 'a b', '']) {
      expect(() => checkPackages([bad])).toThrow(ImageError)
    }
    expect(checkPackages(['nginx', 'curl', 'nginx', 'libc6-dev', 'g++'])).toEqual(['curl', 'g++', 'libc6-dev', 'nginx'])
  })
})

describe('apt sources for the Debian image', () => {
  it('reads one-line sources, dropping options and comments', () => {
    const text = '# comment\ndeb [signed-by=/k.gpg arch=amd64] http://mirror.example/debian bookworm main contrib\ndeb-src http://x bookworm main\n'
    expect(parseOneLineSources(text)).toEqual(['deb http://mirror.example/debian bookworm main contrib'])
  })

  it('reads deb822 stanzas with several suites, skipping disabled and source-only ones', () => {
    const text = [
      'Types: deb',
      'URIs: http://deb.debian.org/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      '',
      'Types: deb-src',
      'URIs: http://deb.debian.org/debian',
      'Suites: bookworm',
      'Components: main',
      '',
      'Enabled: no',
      'Types: deb',
      'URIs: http://other',
      'Suites: bookworm',
      'Components: main',
    ].join('\n')
    expect(parseDeb822Sources(text)).toEqual(['deb http://deb.debian.org/debian bookworm main', 'deb http://deb.debian.org/debian bookworm-updates main'])
  })

  it("uses the host's entries for the suite, a given mirror first, and deb.debian.org when the host has none", async () => {
    const apt = await mkdtemp(join(tmpdir(), 'apt-'))
    await mkdir(join(apt, 'sources.list.d'))
    await writeFile(join(apt, 'sources.list.d', 'debian.sources'), 'Types: deb\nURIs: http://local-mirror/debian\nSuites: bookworm bookworm-security\nComponents: main\n')
    await writeFile(join(apt, 'sources.list.d', 'other.list'), 'deb http://elsewhere trixie main\n')
    expect(await debianSources('bookworm', undefined, apt)).toEqual(['deb http://local-mirror/debian bookworm main', 'deb http://local-mirror/debian bookworm-security main'])
    expect(await debianSources('bookworm', 'http://given/debian', apt)).toEqual(['deb http://given/debian bookworm main', 'deb http://given/debian bookworm-updates main'])
    expect((await debianSources('bookworm', undefined, join(apt, 'missing')))[0]).toBe('deb http://deb.debian.org/debian bookworm main')
  })
})
