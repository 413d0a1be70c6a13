/*
 * The header libvirt's QEMU driver writes at the start of a `virsh save` file: a 16-byte magic,
 * five little-endian u32 (version, data_len, was_running, format, cookieOffset), 14 unused u32,
 * then data_len bytes holding the domain XML (NUL-ended), the cookie at cookieOffset (NUL-ended)
 * and zero padding; QEMU's migration stream follows. libvirt leaves tens of KiB of padding, so a
 * new XML fits. `virsh save-image-define` refuses another name or UUID, which a clone needs to
 * run beside its original: so the harness writes the header itself.
 */

const magic = 'LibvirtQemudSave'
const fixedLength = 92

export interface SaveImageHeader {
  version: number
  dataLength: number
  wasRunning: number
  format: number
  xml: string
  cookie: string
}

/** How many bytes to read from the start of a save file to parse its header: call with the first 92, then with this many. */
export function headerLength(first: Buffer): number {
  checkMagic(first)
  return fixedLength + first.readUInt32LE(20)
}

export function parseSaveImageHeader(bytes: Buffer): SaveImageHeader {
  checkMagic(bytes)
  const dataLength = bytes.readUInt32LE(20)
  const cookieOffset = bytes.readUInt32LE(32)
  if (bytes.length < fixedLength + dataLength) throw new Error(`the save image header is cut short (${bytes.length} of ${fixedLength + dataLength} bytes)`)
  const data = bytes.subarray(fixedLength, fixedLength + dataLength)
  const text = (from: number) => data.subarray(from, Math.max(from, data.indexOf(0, from))).toString('utf8')
  return {
    version: bytes.readUInt32LE(16),
    dataLength,
    wasRunning: bytes.readUInt32LE(24),
    format: bytes.readUInt32LE(28),
    xml: text(0),
    cookie: cookieOffset > 0 ? text(cookieOffset) : '',
  }
}

/** The header with another domain XML, as many bytes as the old one (the stream after it stays where it is). */
export function withDomainXml(header: SaveImageHeader, xml: string): Buffer {
  const xmlBytes = Buffer.from(xml + '\0', 'utf8')
  const cookieBytes = header.cookie ? Buffer.from(header.cookie + '\0', 'utf8') : Buffer.alloc(0)
  if (xmlBytes.length + cookieBytes.length > header.dataLength) {
    throw new Error(`the new domain XML (${xmlBytes.length} bytes) does not fit the save image header (${header.dataLength} bytes with the cookie)`)
  }
  const out = Buffer.alloc(fixedLength + header.dataLength)
  out.write(magic, 0, 'latin1')
  out.writeUInt32LE(header.version, 16)
  out.writeUInt32LE(header.dataLength, 20)
  out.writeUInt32LE(header.wasRunning, 24)
  out.writeUInt32LE(header.format, 28)
  out.writeUInt32LE(header.cookie ? xmlBytes.length : 0, 32)
  xmlBytes.copy(out, fixedLength)
  cookieBytes.copy(out, fixedLength + xmlBytes.length)
  return out
}

function checkMagic(bytes: Buffer): void {
  if (bytes.length < fixedLength || bytes.subarray(0, 16).toString('latin1') !== magic) {
    throw new Error('not a libvirt QEMU save image (no LibvirtQemudSave magic)')
  }
}
