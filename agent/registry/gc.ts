// Garbage collection of cluster images, run on every member. A manifest is
// live while a tag names it, a live index does, or its subject (OCI
// referrers) is live, or a capsule in the Raft state uses it (its spec's
// image names it, by digest, by tag, or by a tag deleted since the capsule
// last started: Catalog.pinnedByCapsules); one that stays unnamed for the grace period is dropped: its record leaves the Raft state (any member
// may issue the delete; a second one finds nothing), this member unpins what
// it pinned for it (`registry:<digest>` for pushes and replicas,
// `registry-run:<digest>` for capsule starts) and deletes from its store the
// blobs it named that nothing else pins and no live manifest names. A
// member learns a manifest's blobs when it first sees it unnamed, so it
// frees them even when another member deleted the record first.
import type { BlobStore } from '../../p2p/content/blob-store.js'
import { MANIFEST_PREFIX, ManifestRecordSchema, TagRecordSchema, TAG_PREFIX, type Catalog } from './catalog.js'
import { parseKvRecord } from '../state/kv-record.js'

const OWNER_PREFIXES = ['registry:', 'registry-run:']

export interface GcResult { droppedManifests: string[], deletedBlobs: string[], freedBytes: number }

export class RegistryGc {
  /** Manifest digest → when this member first saw it unnamed, and the digests it names. */
  private readonly unnamed = new Map<string, { since: number, digests: string[] }>()
  private timer: NodeJS.Timeout | undefined
  private running: Promise<GcResult> | undefined

  constructor (private readonly o: { store: BlobStore, catalog: Catalog, graceMs: number, log?: { info: (obj: object, msg: string) => void, warn: (obj: object, msg: string) => void } }) {}

  /** Runs every `intervalMs` (default a quarter of the grace, between 1 s and 5 min). */
  start (intervalMs = Math.min(300_000, Math.max(1_000, this.o.graceMs / 4))): void {
    this.timer = setInterval(() => { void this.run().catch(err => this.o.log?.warn({ err: (err as Error).message }, 'registry gc failed')) }, intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    await this.running?.catch(() => {}) // its failure is logged by the caller that started the pass
  }

  async run (now = Date.now()): Promise<GcResult> {
    this.running ??= this.pass(now).finally(() => { this.running = undefined })
    return await this.running
  }

  private records (): Map<string, { blobs: string[], children: string[], subject?: string }> {
    const out = new Map<string, { blobs: string[], children: string[], subject?: string }>()
    for (const key of this.o.catalog.kv.state.keys(MANIFEST_PREFIX, 1_000_000)) {
      const r = parseKvRecord(ManifestRecordSchema, this.o.catalog.kv.state.get(key))
      if (r !== undefined) out.set(key.slice(MANIFEST_PREFIX.length), { blobs: r.blobs.map(b => b.digest), children: r.children.map(c => c.digest), ...(r.subject !== undefined ? { subject: r.subject } : {}) })
    }
    return out
  }

  private async pass (now: number): Promise<GcResult> {
    const { store, catalog, graceMs } = this.o
    const kv = catalog.kv
    const records = this.records()
    // Live: named by a tag, or a child of a live index.
    const live = new Set<string>()
    const queue: string[] = []
    for (const key of kv.state.keys(TAG_PREFIX, 1_000_000)) {
      const t = parseKvRecord(TagRecordSchema, kv.state.get(key))
      if (t !== undefined && !live.has(t.digest)) { live.add(t.digest); queue.push(t.digest) }
    }
    // Images capsules use live until no capsule does (every member computes the same from the Raft state).
    const pinned = catalog.pinnedByCapsules()
    for (const d of pinned.digests) if (!live.has(d)) { live.add(d); queue.push(d) }
    // A referrer lives as long as its subject does.
    const referrers = new Map<string, string[]>()
    for (const [d, r] of records) if (r.subject !== undefined) referrers.set(r.subject, [...(referrers.get(r.subject) ?? []), d])
    while (queue.length > 0) {
      const d = queue.pop() as string
      for (const c of [...(records.get(d)?.children ?? []), ...(referrers.get(d) ?? [])]) if (!live.has(c)) { live.add(c); queue.push(c) }
    }
    const liveBlobs = new Set<string>(live)
    for (const d of live) for (const b of records.get(d)?.blobs ?? []) liveBlobs.add(b)

    for (const [digest, r] of records) {
      if (live.has(digest)) this.unnamed.delete(digest)
      else if (!this.unnamed.has(digest)) this.unnamed.set(digest, { since: now, digests: [digest, ...r.blobs] })
    }
    // Pins of manifests this member never saw a record of (pushed and dropped while it was away).
    for (const owner of store.owners().keys()) {
      const prefix = OWNER_PREFIXES.find(p => owner.startsWith(p))
      if (prefix === undefined) continue
      const digest = owner.slice(prefix.length)
      if (!live.has(digest) && !records.has(digest) && !this.unnamed.has(digest)) this.unnamed.set(digest, { since: now, digests: store.owners().get(owner) ?? [digest] })
    }
    for (const d of [...this.unnamed.keys()]) if (live.has(d)) this.unnamed.delete(d)

    const result: GcResult = { droppedManifests: [], deletedBlobs: [], freedBytes: 0 }
    const candidates = new Set<string>()
    for (const [digest, u] of this.unnamed) {
      if (now - u.since < graceMs) continue
      if (records.has(digest)) await catalog.deleteManifest(digest).catch(err => this.o.log?.warn({ digest, err: (err as Error).message }, 'registry gc: cannot drop a manifest record'))
      for (const p of OWNER_PREFIXES) {
        const pinned = store.owners().get(p + digest)
        if (pinned !== undefined) { for (const b of pinned) candidates.add(b); await store.unpin(p + digest) }
      }
      for (const b of u.digests) candidates.add(b)
      result.droppedManifests.push(digest)
      this.unnamed.delete(digest)
    }
    for (const d of candidates) {
      if (liveBlobs.has(d) || store.refCount(d) > 0) continue
      const size = store.sizeSync(d) ?? 0
      if (await store.delete(d)) { result.deletedBlobs.push(d); result.freedBytes += size }
    }
    // Records of what a tag named at a capsule's start, once no capsule names that tag.
    for (const ref of catalog.resolvedRefs()) {
      if (!pinned.refs.has(ref)) await catalog.deleteResolved(ref).catch(err => this.o.log?.warn({ ref, err: (err as Error).message }, 'registry gc: cannot drop a resolved-tag record'))
    }
    if (result.droppedManifests.length > 0) this.o.log?.info({ manifests: result.droppedManifests.length, blobs: result.deletedBlobs.length, bytes: result.freedBytes }, 'registry gc freed unnamed images')
    return result
  }
}
