import { connect, type Socket } from 'node:net'

/** A connected unix socket, or the connect error (the socket not there yet, refused). */
export function connectUnixSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path)
    socket.once('connect', () => {
      socket.off('error', reject)
      resolve(socket)
    })
    socket.once('error', reject)
  })
}
