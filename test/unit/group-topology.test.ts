import { describe, expect, it } from 'vitest'
import { SpecError } from '../../src/errors.js'
import { describeTopology, memberAttachments, topologyOf } from '../../src/machine/group-topology.js'
import { missingAddresses } from '../../src/machine/network-readiness.js'

const tiny = { image: 'tiny' }

describe('topologyOf', () => {
  it('puts the machines of a file on one network named lan when networks is left out', () => {
    const { groups, solo } = topologyOf({ server: tiny, client: tiny }, undefined)
    expect(solo).toEqual([])
    expect(groups).toHaveLength(1)
    expect(groups[0]?.networks).toEqual([{ name: 'lan', index: 1, members: ['server', 'client'] }])
    expect(groups[0]?.machines.map((m) => [m.name, m.number])).toEqual([['server', 1], ['client', 2]])
  })

  it('leaves a single machine, or every machine with networks: {}, on no network', () => {
    expect(topologyOf({ box: tiny }, undefined)).toEqual({ groups: [], solo: ['box'] })
    expect(topologyOf({ a: tiny, b: tiny }, {})).toEqual({ groups: [], solo: ['a', 'b'] })
  })

  it('numbers machines by declaration order across the file and networks by theirs; joins groups through shared members', () => {
    const { groups, solo } = topologyOf({ a: tiny, b: tiny, c: tiny, d: tiny, e: tiny }, { front: ['c', 'a'], back: ['c', 'd'], other: ['e'] })
    expect(solo).toEqual(['b'])
    expect(groups).toHaveLength(2)
    const first = groups.find((group) => group.machines.some((m) => m.name === 'a'))
    expect(first?.machines.map((m) => `${m.name}${m.number}`)).toEqual(['a1', 'c3', 'd4'])
    expect(first?.networks.map((n) => `${n.name}${n.index}:${n.members.join('+')}`)).toEqual(['front1:a+c', 'back2:c+d'])
    const attachments = memberAttachments(first!, first!.machines[1]!, new Map([['front', '/s/front'], ['back', '/s/back']]))
    expect(attachments.map((a) => [a.network, a.ipv4, a.ipv6, a.mac, a.switchSocket])).toEqual([
      ['front', '192.168.1.3', '2001:db8:1::3', '52:54:00:12:01:03', '/s/front'],
      ['back', '192.168.2.3', '2001:db8:2::3', '52:54:00:12:02:03', '/s/back'],
    ])
    expect(attachments[0]?.hosts.map((h) => `${h.name}=${h.ipv4}`)).toEqual(['a=192.168.1.1', 'c=192.168.1.3'])
    expect(describeTopology(first!)).toContain("network 'back' (192.168.2.0/24, 2001:db8:2::/64)")
  })

  it('names an unknown machine, an empty or doubled list, and networks in a machine config', () => {
    expect(() => topologyOf({ a: tiny }, { lan: ['a', 'ghost'] })).toThrow(/networks\.lan: names no such machine: 'ghost' \(the machines are 'a'\)/)
    expect(() => topologyOf({ a: tiny }, { lan: [] })).toThrow(SpecError)
    expect(() => topologyOf({ a: tiny }, { lan: ['a', 'a'] })).toThrow(/twice/)
    expect(() => topologyOf({ a: { image: 'tiny', networks: [] } }, undefined)).toThrow(/machines\.a\.networks/)
  })

  it('refuses a network name QEMU and messages cannot carry, and two machines with one host name', () => {
    expect(() => topologyOf({ a: tiny }, { 'back end': ['a'] })).toThrow(SpecError)
    expect(() => topologyOf({ web_1: tiny, 'web-1': tiny }, undefined)).toThrow(/'web_1' and 'web-1' would both be 'web-1'/)
  })

  it('refuses more than 254 networks or machines', () => {
    const many = Object.fromEntries(Array.from({ length: 255 }, (_, i) => [`m${i}`, tiny]))
    expect(() => topologyOf(many, {})).toThrow(/at most 254 machines/)
    const networks = Object.fromEntries(Array.from({ length: 255 }, (_, i) => [`n${i}`, ['a']]))
    expect(() => topologyOf({ a: tiny }, networks)).toThrow(/at most 254 networks/)
  })
})

describe('missingAddresses', () => {
  const attachment = memberAttachments(topologyOf({ a: tiny, b: tiny }, undefined).groups[0]!, { name: 'b', number: 2, config: tiny }, new Map())
  it('waits for both addresses, and for IPv6 to leave the tentative state', () => {
    const before = '2: eth0    inet 10.0.2.15/24 scope global eth0\n3: eth1    inet6 2001:db8:1::2/64 scope global tentative \\       valid_lft forever'
    expect(missingAddresses(before, attachment)).toEqual(['192.168.1.2', '2001:db8:1::2'])
    const after = '3: eth1    inet 192.168.1.2/24 scope global eth1\n3: eth1    inet6 2001:db8:1::2/64 scope global \\       valid_lft forever'
    expect(missingAddresses(after, attachment)).toEqual([])
  })
})
