import { networkInterfaces } from 'node:os'
import { describe, expect, it } from 'vitest'
import { allowedDestination, isThisHost } from '../../src/network/outside-destination.js'
import { splitHostPort } from '../../src/network/outside-proxy.js'

describe('the outside-access proxy refuses this host in every spelling', () => {
  it.each(['127.0.0.1', '127.9.9.9', '::1', '0:0:0:0:0:0:0:1', '0::1', '::', '::0', '::ffff:127.0.0.1', '::FFFF:127.0.0.1', '::ffff:7f00:1', '::ffff:0:0', '0.0.0.0', '169.254.1.1', 'fe80::1'])('%s', (address) => {
    expect(isThisHost(address)).toBe(true)
  })

  it("refuses the host's own interface addresses, and lets the world through", () => {
    const own = Object.values(networkInterfaces()).flatMap((entries) => entries ?? []).map((entry) => entry.address.split('%')[0] as string)
    for (const address of own) expect(isThisHost(address), address).toBe(true)
    expect(isThisHost('192.0.2.10')).toBe(false)
    expect(isThisHost('2001:db8::10')).toBe(false)
  })

  it('resolves names itself and refuses one that leads here', async () => {
    // Refused whether the host resolves localhost (to an address of its own) or not at all.
    expect(await allowedDestination('localhost')).not.toHaveProperty('address')
    expect(await allowedDestination('[::ffff:7f00:1]')).toMatchObject({ refused: expect.any(String) })
    expect(await allowedDestination('192.0.2.10')).toEqual({ address: '192.0.2.10' })
  })
})

describe('splitHostPort (CONNECT authorities)', () => {
  it('takes host:port and [v6]:port, and nothing with a port outside 1..65535', () => {
    expect(splitHostPort('deb.debian.org:443')).toEqual({ host: 'deb.debian.org', port: 443 })
    expect(splitHostPort('[2001:db8::1]:8443')).toEqual({ host: '2001:db8::1', port: 8443 })
    for (const bad of ['1.1.1.1:70000', '1.1.1.1:0', 'host', '2001:db8::1:443', ':443', 'a:b']) expect(splitHostPort(bad), bad).toBeUndefined()
  })
})
