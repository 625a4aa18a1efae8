// Who pins which blobs: an owner (`image:<ref>`, `object:<id>`) holds a set
// of digests, and a blob some owner pins is never evicted. Kept in
// refs.json, rewritten atomically, one write at a time; changes made while a
// write is under way share the next one (a group commit: each S3 PUT pins,
// and a write per pin queued them all behind one another).
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { digestHex } from './digest.js'
import { writeFileAtomic } from './fs-atomic.js'

const RefsSchema = z.record(z.string(), z.array(z.string()))

export class BlobRefs {
  private write: Promise<void> = Promise.resolve()
  /** The write that will carry the changes made since the current one began; undefined until there are any. */
  private next: Promise<void> | undefined
  /** Writes of refs.json begun since load. */
  writes = 0

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

  /** Resolves once this change is on disk: in the next write, which serializes the pins when it begins. */
  private async save (): Promise<void> {
    if (this.next === undefined) {
      const write = this.write.then(async () => {
        this.next = undefined // changes from here on need a write of their own
        this.writes++
        const body = Buffer.from(JSON.stringify(Object.fromEntries([...this.refs.entries()].map(([o, ds]) => [o, [...ds]]))))
        await writeFileAtomic(this.file, body, this.tmpDir)
      })
      this.next = write
      this.write = write.catch(() => {}) // the callers get the error from `await write`; the chain goes on for the next save
    }
    await this.next
  }
}
