import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'

/** sha256 over labelled parts, so that moving bytes between parts changes the key. */
export class ContentHash {
  private readonly hash = createHash('sha256')

  text(label: string, value: string): this {
    this.hash.update(`${label}\0${value.length}\0${value}\0`)
    return this
  }

  async file(label: string, path: string): Promise<this> {
    this.hash.update(`${label}\0file\0`)
    for await (const chunk of createReadStream(path)) this.hash.update(chunk as Buffer)
    this.hash.update('\0')
    return this
  }

  /** A short, path-friendly key. */
  digest(): string {
    return this.hash.digest('hex').slice(0, 20)
  }
}

/** sha256 of one file's bytes, hex. */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
