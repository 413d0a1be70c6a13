import { existsSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HypervisorError } from '../../src/errors.js'
import { LibvirtError } from '../../src/hypervisor/libvirt/libvirt-error.js'
import { VirshShell, quoteVirshWord } from '../../src/hypervisor/libvirt/virsh-shell.js'

const virsh = '/usr/bin/virsh'
const noVirsh = !existsSync(virsh)

describe('quoteVirshWord', () => {
  it.each(['list', '--all', 'vmh-3f2a-web', '/var/lib/vmharness/pool/disk.qcow2', 'qemu+ssh://root@h:22/system', '52:54:00:aa:bb:cc', 'a=b,c%d+e@f_g.h'])('leaves %s bare', (word) => {
    expect(quoteVirshWord(word)).toBe(word)
  })

  it.each([
    ['a b', "'a b'"],
    ['"double"', `'"double"'`],
    ['$HOME', "'$HOME'"],
    ['back\\slash', "'back\\slash'"],
    ['semi;colon', "'semi;colon'"],
    ['#hash', "'#hash'"],
    ['', "''"],
    ['ünï', "'ünï'"],
  ])('quotes %j as %s', (word, quoted) => {
    expect(quoteVirshWord(word)).toBe(quoted)
  })

  it('closes the quotes around a single quote, escapes it, and reopens them', () => {
    expect(quoteVirshWord("it's")).toBe(`'it'\\''s'`)
    expect(quoteVirshWord("''")).toBe(`''\\'''\\'''`)
  })

  it.each(['two\nlines', 'carriage\rreturn', 'nul\0byte', 'tab\there', 'ctrl-a\x01', '\x15erase', 'escape\x1b[K', 'delete\x7f'])(
    'refuses %j with a LibvirtError (readline would take it as a newline or an editing key)',
    (word) => {
      expect(() => quoteVirshWord(word)).toThrow(LibvirtError)
      expect(() => quoteVirshWord(word)).toThrow(/may not hold a newline, NUL or other control character/)
    },
  )
})

describe.skipIf(noVirsh)('VirshShell against the real virsh and libvirt test driver (skipped: /usr/bin/virsh is not installed)', () => {
  let shell: VirshShell

  beforeAll(() => {
    shell = new VirshShell(virsh, 'test:///default')
  })
  afterAll(() => {
    shell?.close()
  })

  it.each([
    'plain',
    'two words',
    "single ' quote",
    "'quoted at both ends'",
    'double " quote',
    'back\\slash and \\\\ two',
    '$HOME and ${PATH}',
    'semi;colon && pipe | amp & star * ? [x]',
    '#not a comment',
    '   spaces around   ',
    'unicode ünï ✓',
    "mixed '\"\\$ all",
  ])('passes %j to virsh exactly', async (word) => {
    expect(await shell.run(['echo', word], 5000)).toBe(word)
  })

  it('passes several words as several arguments', async () => {
    // virsh's echo joins its arguments with one space: quoting must keep each word whole, the empty one too.
    expect(await shell.run(['echo', 'a b', '', "c'd"], 5000)).toBe("a b  c'd")
  })

  it("lists the test driver's own domain", async () => {
    const listing = await shell.run(['list', '--all'], 5000)
    expect(listing).toMatch(/^\s*1\s+test\s+running\s*$/m)
    expect(await shell.run(['list', '--all', '--name'], 5000)).toMatch(/^test$/m)
  })

  it("gives libvirt's own message when a command fails, and keeps working afterwards", async () => {
    const failure = await shell.run(['dominfo', 'no-such-domain'], 5000).catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(LibvirtError)
    expect(failure).toBeInstanceOf(HypervisorError)
    const error = failure as LibvirtError
    expect(error.message).toMatch(/^libvirt: .*failed to get domain 'no-such-domain'/s)
    expect(error.message).toContain('(virsh dominfo no-such-domain)')
    expect(error.message).not.toMatch(/vmharness-done-/)
    expect(error.command).toEqual(['dominfo', 'no-such-domain'])
    expect(error.stderr).toMatch(/^error: /m)
    expect(shell.alive).toBe(true)
    expect(await shell.run(['echo', 'still here'], 5000)).toBe('still here')
    expect(await shell.run(['domstate', 'test'], 5000)).toMatch(/^running\s*$/)
  })

  it('refuses an unknown command with its error, not a hang', async () => {
    await expect(shell.run(['no-such-command'], 5000)).rejects.toThrow(/unknown command: 'no-such-command'/)
    expect(await shell.run(['echo', 'after'], 5000)).toBe('after')
  })

  it('runs commands given at once one after another, each answer to its own command', async () => {
    const words = Array.from({ length: 12 }, (_, i) => `word ${i} '${'x'.repeat(i)}'`)
    const answers = await Promise.all([...words.map((word) => shell.run(['echo', word], 5000)), shell.run(['dominfo', 'missing'], 5000).catch((error: Error) => error.message)])
    expect(answers.slice(0, words.length)).toEqual(words)
    expect(answers[words.length]).toMatch(/failed to get domain 'missing'/)
  })

  it('changes state in the one connection it holds', async () => {
    // test:///default starts afresh for each connection: a suspend seen by the next command means one connection.
    await shell.run(['suspend', 'test'], 5000)
    try {
      expect((await shell.run(['domstate', 'test'], 5000)).trim()).toBe('paused')
    } finally {
      await shell.run(['resume', 'test'], 5000)
    }
    expect((await shell.run(['domstate', 'test'], 5000)).trim()).toBe('running')
  })

  it('gives up on a command that does not answer in time, and the shell is not used again', async () => {
    const own = new VirshShell(virsh, 'test:///default')
    try {
      expect(await own.run(['echo', 'ready'], 5000)).toBe('ready')
      // Waits for events until interrupted: it never answers.
      const started = Date.now()
      const failure = await own.run(['event', '--all', '--loop'], 400).catch((error: unknown) => error)
      expect(Date.now() - started).toBeLessThan(4000)
      expect(failure).toBeInstanceOf(LibvirtError)
      expect((failure as Error).message).toMatch(/gave no answer within 400 ms/)
      expect(own.alive).toBe(false)
      await expect(own.run(['echo', 'again'], 5000)).rejects.toThrow(/virsh for test:\/\/\/default is gone/)
    } finally {
      own.close()
    }
  })

  it('refuses commands once closed', async () => {
    const own = new VirshShell(virsh, 'test:///default')
    expect(await own.run(['echo', 'once'], 5000)).toBe('once')
    own.close()
    await expect(own.run(['echo', 'twice'], 5000)).rejects.toThrow(LibvirtError)
    expect(own.alive).toBe(false)
  })

  it('says when virsh cannot connect', async () => {
    const own = new VirshShell(virsh, 'test:///no/such/file.xml')
    try {
      await expect(own.run(['list'], 5000)).rejects.toThrow(LibvirtError)
    } finally {
      own.close()
    }
  })

  it('refuses a word with a newline or an editing key before it reaches virsh', async () => {
    // Written as they are, 'a\nlist' would run list, and in 'x\x01y' Ctrl-A would move y to the line's start: 'yecho x'.
    for (const word of ['a\nlist', 'x\x01y', 'ab\x15cd', 'tab\there']) {
      await expect(shell.run(['echo', word], 5000)).rejects.toThrow(/may not hold a newline, NUL or other control character/)
    }
    expect(await shell.run(['echo', 'fine'], 5000)).toBe('fine')
  })
})
