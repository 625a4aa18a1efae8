// Who pins which blobs: an owner (`image:<ref>`, `object:<id>`) holds a set
// of digests, and a blob some owner pins is never evicted. Kept in
// refs.json, rewritten atomically on each change, one write at a time.
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { digestHex } from './digest.js'
import { writeFileAtomic } from './fs-atomic.js'

const RefsSchema = z.record(z.string(), z.array(z.string()))

export class BlobRefs {
  private write: Promise<void> = Promise.resolve()

  private constructor (private readonly file: string, private readonly tmpDir: string, private readonly refs: Map<string, Set<string>>) {}

  /** The pins in `file` (none when it does not exist; a malformed file throws). */
  static async load (file: string, tmpDir: string): Promise<BlobRefs> {
    let refs = new Map<string, Set<string>>()
    try {
      const raw = RefsSchema.parse(JSON.parse(await readFile(file, 'utf8')))
      refs = new Map(Object.entries(raw).map(([owner, ds]) => [owner, new Set(ds)]))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    return new BlobRefs(file, tmpDir, refs)
  }

  /** How many owners pin `digest`. */
  count (digest: string): number {
    let n = 0
    for (const ds of this.refs.values()) if (ds.has(digest)) n++
    return n
  }

  /** Pins `digests` under `owner`, replacing that owner's earlier pins. */
  async pin (owner: string, digests: string[]): Promise<void> {
    for (const d of digests) digestHex(d)
    this.refs.set(owner, new Set(digests))
    await this.save()
  }

  async unpin (owner: string): Promise<void> {
    if (this.refs.delete(owner)) await this.save()
  }

  owners (): Map<string, string[]> {
    return new Map([...this.refs.entries()].map(([o, ds]) => [o, [...ds]]))
  }

  /** Resolves once the last change is on disk (or failed). */
  async flushed (): Promise<void> {
    await this.write
  }

  private async save (): Promise<void> {
    const body = Buffer.from(JSON.stringify(Object.fromEntries([...this.refs.entries()].map(([o, ds]) => [o, [...ds]]))))
    const write = this.write.then(async () => await writeFileAtomic(this.file, body, this.tmpDir))
    this.write = write.catch(() => {}) // this caller gets the error from `await write`; the chain goes on for the next save
    await write
  }
}
