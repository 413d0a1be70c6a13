import { execa, type ResultPromise } from 'execa'

/** A client plugged into one port of a vde_switch, sending and receiving raw Ethernet frames without a VM. */
export interface Plug {
  /** Broadcasts a frame from `mac` whose payload is `text`. */
  broadcast(mac: string, text: string): void
  /** The payloads of the frames received so far. */
  received: string[]
  close(): Promise<void>
}

const etherType = Buffer.from([0x88, 0xb5]) // IEEE "local experimental": nothing else on the switch sends it

/**
 * `vde_plug <dir>[<port>]` with one argument carries the port's frames over its stdin and stdout
 * in the vde stream format: a 2-byte big-endian length, then the frame.
 */
export async function plugIn(vdePlug: string, switchSocket: string, port: number): Promise<Plug> {
  const child: ResultPromise = execa(vdePlug, [`${switchSocket}[${port}]`], { reject: false, stdin: 'pipe', stdout: 'pipe', stderr: 'ignore', buffer: false, encoding: 'buffer' })
  const received: string[] = []
  let pending = Buffer.alloc(0)
  child.stdout?.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
      const frame = pending.subarray(2, 2 + pending.readUInt16BE(0))
      pending = pending.subarray(2 + frame.length)
      if (frame.subarray(12, 14).equals(etherType)) received.push(frame.subarray(14).toString().replace(/\0+$/, ''))
    }
  })
  return {
    broadcast(mac, text) {
      const frame = Buffer.alloc(60)
      Buffer.from('ffffffffffff', 'hex').copy(frame, 0)
      Buffer.from(mac.replaceAll(':', ''), 'hex').copy(frame, 6)
      etherType.copy(frame, 12)
      frame.write(text, 14)
      const length = Buffer.alloc(2)
      length.writeUInt16BE(frame.length)
      child.stdin?.write(Buffer.concat([length, frame]))
    },
    received,
    async close() {
      child.kill('SIGKILL')
      await child
    },
  }
}
