import { describe, expect, it } from 'vitest'
import { headerLength, parseSaveImageHeader, withDomainXml } from '../../src/hypervisor/libvirt/save-image-header.js'

const oldXml = "<domain type='kvm'>\n  <name>vmh-original</name>\n  <uuid>0b7e2c52-2d5a-4f4e-9a45-3f1d2f6a2b10</uuid>\n</domain>\n"
const cookie = '<qemu-migration>\n  <name>vmh-original</name>\n  <hostname>hv1</hostname>\n</qemu-migration>\n'
/** What follows the header in a real file: QEMU's migration stream. */
const stream = Buffer.concat([Buffer.from('QEVM', 'latin1'), Buffer.from([0, 0, 0, 3]), Buffer.from('pretend RAM pages '.repeat(8))])

/** A save file as libvirt's QEMU driver writes one: the 92-byte header, data_len bytes (XML, cookie, zeros), then the stream. */
function saveFile(options: { xml?: string; cookie?: string | undefined; dataLength?: number; magic?: string; wasRunning?: number; format?: number } = {}): Buffer {
  const xml = Buffer.from((options.xml ?? oldXml) + '\0', 'utf8')
  const cookieText = 'cookie' in options ? options.cookie : cookie
  const cookieBytes = cookieText === undefined ? Buffer.alloc(0) : Buffer.from(cookieText + '\0', 'utf8')
  const dataLength = options.dataLength ?? xml.length + cookieBytes.length + 1024
  const header = Buffer.alloc(92)
  header.write(options.magic ?? 'LibvirtQemudSave', 0, 'latin1')
  header.writeUInt32LE(2, 16)
  header.writeUInt32LE(dataLength, 20)
  header.writeUInt32LE(options.wasRunning ?? 1, 24)
  header.writeUInt32LE(options.format ?? 0, 28)
  header.writeUInt32LE(cookieText === undefined ? 0 : xml.length, 32)
  // The 14 unused u32 stay zero, as libvirt leaves them.
  const data = Buffer.alloc(dataLength)
  xml.copy(data, 0)
  cookieBytes.copy(data, xml.length)
  return Buffer.concat([header, data, stream])
}

describe('headerLength', () => {
  it('reads data_len from the first 92 bytes and adds the fixed part', () => {
    const file = saveFile({ dataLength: 65_536 + 300 })
    expect(headerLength(file.subarray(0, 92))).toBe(92 + 65_536 + 300)
    expect(headerLength(saveFile({ dataLength: 4096 }).subarray(0, 92))).toBe(92 + 4096)
  })

  it('refuses fewer than 92 bytes', () => {
    expect(() => headerLength(saveFile().subarray(0, 91))).toThrow(/not a libvirt QEMU save image/)
  })
})

describe('parseSaveImageHeader', () => {
  it('reads the fields, the XML and the cookie', () => {
    const file = saveFile({ wasRunning: 1, format: 0, dataLength: 2048 })
    expect(parseSaveImageHeader(file)).toEqual({ version: 2, dataLength: 2048, wasRunning: 1, format: 0, xml: oldXml, cookie })
  })

  it('reads a header alone, without the stream after it', () => {
    const file = saveFile()
    const header = file.subarray(0, headerLength(file.subarray(0, 92)))
    expect(parseSaveImageHeader(header)).toEqual(parseSaveImageHeader(file))
  })

  it('keeps was_running and format as they are', () => {
    expect(parseSaveImageHeader(saveFile({ wasRunning: 0, format: 3 }))).toMatchObject({ wasRunning: 0, format: 3 })
  })

  it('gives an empty cookie when cookieOffset is 0', () => {
    const parsed = parseSaveImageHeader(saveFile({ cookie: undefined }))
    expect(parsed.cookie).toBe('')
    expect(parsed.xml).toBe(oldXml)
  })

  it('refuses a header cut short of data_len', () => {
    const file = saveFile({ dataLength: 4096 })
    expect(() => parseSaveImageHeader(file.subarray(0, 92 + 4000))).toThrow(/cut short \(4092 of 4188 bytes\)/)
  })

  it.each([
    ['another magic', saveFile({ magic: 'QEVMQEVMQEVMQEVM' })],
    ['an unfinished save (libvirt writes LibvirtQemudPart until it is done)', saveFile({ magic: 'LibvirtQemudPart' })],
    ['a QEMU migration stream alone', Buffer.concat([stream, Buffer.alloc(200)])],
    ['a qcow2 image', Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]), Buffer.alloc(200)])],
    ['an empty file', Buffer.alloc(0)],
  ])('refuses %s as not a save image', (_what, bytes) => {
    expect(() => parseSaveImageHeader(bytes)).toThrow(/not a libvirt QEMU save image \(no LibvirtQemudSave magic\)/)
    expect(() => headerLength(bytes.subarray(0, 92))).toThrow(/not a libvirt QEMU save image/)
  })
})

describe('withDomainXml', () => {
  const dataLength = 1500
  const original = saveFile({ dataLength, wasRunning: 1, format: 0 })
  const parsed = parseSaveImageHeader(original)
  const longer = oldXml.replace('</domain>', `  <description>${'a clone of vmh-original, running beside it; '.repeat(6)}</description>\n</domain>`)
  const shorter = "<domain type='kvm'><name>c</name></domain>"

  it.each([
    ['a longer', longer],
    ['a shorter', shorter],
  ])('writes %s XML into a header of the same length, the cookie right after it', (_what, xml) => {
    const header = withDomainXml(parsed, xml)
    expect(header.length).toBe(92 + dataLength)
    expect(header.length).toBe(headerLength(original.subarray(0, 92)))
    // Fields: magic, version, data_len, was_running, format kept; cookieOffset just past the new XML's NUL.
    expect(header.subarray(0, 16).toString('latin1')).toBe('LibvirtQemudSave')
    expect(header.readUInt32LE(16)).toBe(2)
    expect(header.readUInt32LE(20)).toBe(dataLength)
    expect(header.readUInt32LE(24)).toBe(1)
    expect(header.readUInt32LE(28)).toBe(0)
    const xmlLength = Buffer.byteLength(xml) + 1
    expect(header.readUInt32LE(32)).toBe(xmlLength)
    expect(header.subarray(36, 92).equals(Buffer.alloc(56))).toBe(true)
    expect(header.subarray(92, 92 + xmlLength).toString('utf8')).toBe(xml + '\0')
    expect(header.subarray(92 + xmlLength, 92 + xmlLength + cookie.length + 1).toString('utf8')).toBe(cookie + '\0')
    // Zero padding to the end, nothing of the old XML left behind.
    expect(header.subarray(92 + xmlLength + cookie.length + 1).every((byte) => byte === 0)).toBe(true)
    expect(header.includes('vmh-original</name>\n  <uuid>')).toBe(xml === longer)

    // The whole file: the new header in front of the untouched stream parses to the new XML and the same cookie.
    const file = Buffer.concat([header, original.subarray(header.length)])
    expect(file.length).toBe(original.length)
    expect(file.subarray(-stream.length).equals(stream)).toBe(true)
    expect(parseSaveImageHeader(file)).toEqual({ ...parsed, xml })
  })

  it('counts the XML in bytes, not characters', () => {
    const xml = '<domain><description>clône – ünïcode ✓</description></domain>'
    const header = withDomainXml(parsed, xml)
    expect(header.readUInt32LE(32)).toBe(Buffer.byteLength(xml) + 1)
    expect(header.readUInt32LE(32)).toBeGreaterThan(xml.length + 1)
    expect(parseSaveImageHeader(header)).toMatchObject({ xml, cookie })
  })

  it('takes an XML that exactly fills data_len, and refuses one byte more', () => {
    const room = dataLength - (cookie.length + 1) - 1
    const fits = '<domain>' + 'x'.repeat(room - '<domain></domain>'.length) + '</domain>'
    expect(Buffer.byteLength(fits)).toBe(room)
    const header = withDomainXml(parsed, fits)
    expect(parseSaveImageHeader(header)).toMatchObject({ xml: fits, cookie })
    expect(header[header.length - 1]).toBe(0)
    expect(() => withDomainXml(parsed, fits + 'y')).toThrow(/does not fit the save image header/)
  })

  it('refuses an XML too long for data_len', () => {
    expect(() => withDomainXml(parsed, `<domain>${'x'.repeat(dataLength)}</domain>`)).toThrow(/\(\d+ bytes\) does not fit the save image header \(1500 bytes with the cookie\)/)
  })

  it('keeps cookieOffset 0 and writes no cookie when the original had none', () => {
    const noCookie = parseSaveImageHeader(saveFile({ cookie: undefined, dataLength: 600, wasRunning: 0, format: 2 }))
    const header = withDomainXml(noCookie, shorter)
    expect(header.readUInt32LE(32)).toBe(0)
    expect(header.subarray(92 + shorter.length + 1).every((byte) => byte === 0)).toBe(true)
    expect(parseSaveImageHeader(header)).toEqual({ version: 2, dataLength: 600, wasRunning: 0, format: 2, xml: shorter, cookie: '' })
  })
})
