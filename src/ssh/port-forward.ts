import { createServer, type Server, type Socket } from 'node:net'
import type { SshSession } from './ssh-session.js'

/**
 * A listener on 127.0.0.1 whose connections are carried to a guest port through the VM's SSH
 * session. The session is looked up per connection, so a forward outlives a restore (which
 * replaces the session).
 */
export class PortForward {
  private constructor(
    private readonly server: Server,
    private readonly connections: Set<Socket>,
    readonly guestPort: number,
    readonly port: number,
  ) {}

  static async open(guestPort: number, currentSession: () => SshSession): Promise<PortForward> {
    if (!Number.isInteger(guestPort) || guestPort < 1 || guestPort > 65535) throw new RangeError(`guest port must be 1 to 65535, got ${guestPort}`)
    const connections = new Set<Socket>()
    const server = createServer((socket) => {
      connections.add(socket)
      socket.once('close', () => connections.delete(socket))
      socket.on('error', () => socket.destroy())
      Promise.resolve()
        .then(() => currentSession().openTunnel(guestPort))
        .then(
          (channel) => {
            if (socket.destroyed) return channel.close()
            channel.once('close', () => socket.destroy())
            socket.once('close', () => channel.close())
            socket.pipe(channel).pipe(socket)
          },
          () => socket.destroy(),
        )
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    const address = server.address()
    return new PortForward(server, connections, guestPort, typeof address === 'object' && address ? address.port : 0)
  }

  /** Stops listening and cuts the connections still open. */
  close(): Promise<void> {
    for (const socket of this.connections) socket.destroy()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}
