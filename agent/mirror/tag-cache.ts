// The last known resolution of each tag the mirror served (tag → manifest
// digest and media type), so tags still resolve while the upstream is down.
// The default store is a JSON file next to the blob store; the agent may
// inject another one (e.g. the cluster's Raft KV) through `TagResolutions`.
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { z } from 'zod'
import { writeFileAtomic } from '../../p2p/content/fs-atomic.js'

export interface TagResolution { digest: string, mediaType: string, at: number }

export interface TagResolutions {
  /** `source` says whose resolution it is when a store combines several (absent: this node's). */
  get: (key: string) => Promise<(TagResolution & { source?: 'cluster' | 'node' }) | undefined>
  set: (key: string, value: TagResolution) => Promise<void>
  /** Tags known under `registry/repository` (for `tags/list`). */
  list?: (repoKey: string) => Promise<string[]>
}

const FileSchema = z.record(z.string(), z.object({ digest: z.string().regex(/^sha256:[a-f0-9]{64}$/), mediaType: z.string().max(200), at: z.number() }))
/** Tags remembered at most; the oldest resolutions are dropped first. */
export const MAX_TAG_RESOLUTIONS = 10_000

/** The key of a tag: `registry/repository:tag`. */
export function tagKey (registry: string, repository: string, tag: string): string {
  return `${registry}/${repository}:${tag}`
}

export class FileTagResolutions implements TagResolutions {
  private entries: Map<string, TagResolution> | undefined
  private write: Promise<void> = Promise.resolve()

  constructor (private readonly file: string, private readonly tmpDir = dirname(file)) {}

  private async load (): Promise<Map<string, TagResolution>> {
    if (this.entries !== undefined) return this.entries
    let m = new Map<string, TagResolution>()
    try {
      m = new Map(Object.entries(FileSchema.parse(JSON.parse(await readFile(this.file, 'utf8')))))
    } catch { /* missing or unreadable: start empty */ }
    this.entries ??= m
    return this.entries
  }

  async get (key: string): Promise<TagResolution | undefined> {
    return (await this.load()).get(key)
  }

  async list (repoKey: string): Promise<string[]> {
    const out: string[] = []
    for (const k of (await this.load()).keys()) {
      if (k.startsWith(repoKey + ':')) out.push(k.slice(repoKey.length + 1))
    }
    return out.sort()
  }

  async set (key: string, value: TagResolution): Promise<void> {
    const m = await this.load()
    const old = m.get(key)
    if (old !== undefined && old.digest === value.digest && old.mediaType === value.mediaType && value.at - old.at < 60_000) return
    m.delete(key)
    m.set(key, value)
    while (m.size > MAX_TAG_RESOLUTIONS) {
      const first = m.keys().next().value
      if (first === undefined) break
      m.delete(first)
    }
    const body = Buffer.from(JSON.stringify(Object.fromEntries(m)))
    const w = this.write.then(async () => await writeFileAtomic(this.file, body, this.tmpDir))
    this.write = w.catch(() => {}) // this caller gets the error from `await w`; the chain goes on for the next set
    await w
  }
}
