import { readFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { homedir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import ssh2 from 'ssh2'
import { HostError } from '../../errors.js'
import { knownHostKeys } from '../../ssh/known-hosts.js'
import type { RemoteHost } from './libvirt-uri.js'

/** Where the remote hosts' keys are pinned: VMHARNESS_LIBVIRT_KNOWN_HOSTS, else the user's known_hosts. */
export function knownHostsFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.VMHARNESS_LIBVIRT_KNOWN_HOSTS || join(homedir(), '.ssh', 'known_hosts')
}

/**
 * One SSH connection to a remote hypervisor host, used as a jump host: guests on its libvirt
 * networks are reached with `forwardOut` (their own host keys are still checked, by the guest
 * session on top), and files the daemon writes there (console logs) are read over sftp. The host
 * key must be in known_hosts: an unknown host is refused, never trusted on first use.
 */
export class HostJump {
  private client: Promise<ssh2.Client> | undefined
  private socket: Socket | undefined
  private users = 0

  constructor(private readonly host: RemoteHost) {}

  get label(): string {
    return `${this.host.user}@${this.host.host}:${this.host.port}`
  }

  /** A TCP stream from the hypervisor host to `address:port` (a guest on one of its networks). */
  async forward(address: string, port: number): Promise<Duplex> {
    const client = await this.connected()
    this.hold(+1)
    return new Promise((resolve, reject) =>
      client.forwardOut('127.0.0.1', 0, address, port, (error, channel) => {
        if (error) {
          this.hold(-1)
          return reject(new Error(`${this.label} cannot reach ${address}:${port}: ${error.message}`))
        }
        channel.once('close', () => this.hold(-1))
        resolve(channel)
      }),
    )
  }

  /** The connection keeps the process alive only while a channel or a read is open on it. */
  private hold(change: number): void {
    this.users += change
    if (this.users > 0) this.socket?.ref()
    else this.socket?.unref()
  }

  /** The bytes of a file on the hypervisor host from `offset` on (empty when it does not exist). */
  async readFrom(path: string, offset: number): Promise<Buffer> {
    const client = await this.connected()
    this.hold(+1)
    const sftp = await new Promise<ssh2.SFTPWrapper>((resolve, reject) => client.sftp((error, session) => (error ? reject(error) : resolve(session))))
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = []
        const stream = sftp.createReadStream(path, { start: offset })
        stream.on('data', (chunk: Buffer) => chunks.push(chunk))
        stream.on('end', () => resolve(Buffer.concat(chunks)))
        stream.on('error', (error: Error) => ((error as { code?: unknown }).code === 2 ? resolve(Buffer.alloc(0)) : reject(error)))
      })
    } finally {
      sftp.end()
      this.hold(-1)
    }
  }

  close(): void {
    const client = this.client
    this.client = undefined
    void client?.then((c) => c.end(), () => undefined)
  }

  private connected(): Promise<ssh2.Client> {
    this.client ??= this.connect().catch((error: unknown) => {
      this.client = undefined
      throw error
    })
    return this.client
  }

  private async connect(): Promise<ssh2.Client> {
    const knownHosts = knownHostsFile()
    const text = await readFile(knownHosts, 'utf8').catch(() => '')
    const pinned = knownHostKeys(text, this.host.host, this.host.port)
    const keyName = this.host.port === 22 ? this.host.host : `[${this.host.host}]:${this.host.port}`
    if (pinned.length === 0) {
      throw new HostError(
        `the SSH host key of the libvirt host ${keyName} is not in ${knownHosts}`,
        `check the host's key fingerprint and add it (ssh-keyscan -p ${this.host.port} ${this.host.host} >> ${knownHosts}), or point VMHARNESS_LIBVIRT_KNOWN_HOSTS at a file that lists it`,
      )
    }
    const privateKey = await this.privateKey()
    const socket = connect({ host: this.host.host, port: this.host.port })
    this.socket = socket
    return new Promise((resolve, reject) => {
      const client = new ssh2.Client()
      let presented: Buffer | undefined
      client.once('ready', () => {
        client.removeAllListeners('error')
        client.on('error', () => undefined)
        client.on('close', () => {
          if (this.client) this.client = undefined
        })
        this.hold(0)
        resolve(client)
      })
      client.once('error', (error) => {
        client.destroy()
        if (presented && !pinned.some((key) => key.equals(presented as Buffer))) {
          reject(new HostError(`the libvirt host ${keyName} presented a host key that ${knownHosts} does not list for it`, `if the host was reinstalled, check its new key and replace its line in ${knownHosts}`))
        } else {
          reject(new HostError(`cannot log in to the libvirt host ${this.label} over SSH: ${error.message}`, 'check that its sshd runs and that the key (the URI\'s keyfile, else ~/.ssh/id_ed25519 or id_rsa) is in its authorized_keys', { cause: error }))
        }
      })
      client.connect({
        sock: socket,
        username: this.host.user,
        privateKey,
        readyTimeout: 20_000,
        hostVerifier: (key: Buffer) => {
          presented = key
          return pinned.some((known) => known.equals(key))
        },
      })
    })
  }

  private async privateKey(): Promise<Buffer> {
    const candidates = this.host.keyfile ? [this.host.keyfile] : [join(homedir(), '.ssh', 'id_ed25519'), join(homedir(), '.ssh', 'id_rsa')]
    for (const path of candidates) {
      const key = await readFile(path).catch(() => undefined)
      if (key) return key
    }
    throw new HostError(`no SSH key to log in to the libvirt host ${this.label} with (looked at ${candidates.join(', ')})`, 'give the key in the URI (?keyfile=/path/to/key)')
  }
}
