// Freeing the disk of deleted S3 objects, on every agent for its own copy:
// when a record, part or upload that named an object goes (delete,
// overwrite, abort, complete), its id becomes a candidate; a sweep some time
// later unpins the object on this node and deletes its blobs that nothing
// else pins — but only if by then no S3 record or part names it, no
// `object put` record (`objects/<id>`) does, and no PUT on this node is
// storing it. Checking the state at sweep time, not at apply, keeps a log
// replay (which applies an old delete before a later put of the same bytes)
// from freeing what the final state still names.
import type { ObjectStore } from '../../p2p/content/objects.js'
import type { BlobStore } from '../../p2p/content/blob-store.js'
import { S3Error } from './errors.js'
import type { S3Table } from './s3-state.js'

/** The logger the S3 parts use. */
export interface S3Log {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
}

/** How long a released id waits before its blobs are freed. */
export const DEFAULT_COLLECT_DELAY_MS = 30_000
/** Candidates remembered at most (beyond: left for a later release to name again). */
export const MAX_CANDIDATES = 100_000

export interface S3CollectorDeps {
  table: () => S3Table
  /** This replica's KV: `objects/<id>` marks an object of `object put`. */
  kvGet: (key: string) => string | undefined
  store: Pick<BlobStore, 'unpin' | 'refCount' | 'delete' | 'pin'>
  objects: Pick<ObjectStore, 'readManifest' | 'localManifest'>
  delayMs: number
  log: S3Log
}

export class S3Collector {
  /** Released during the current interval, and during the one before (swept next: at least one delay old). */
  private fresh = new Set<string>()
  private aged = new Set<string>()
  private readonly inFlight = new Map<string, number>()
  /** Ids a sweep is freeing now (storing waits for it). */
  private readonly collecting = new Map<string, Promise<void>>()
  /** Ids whose pin a sweep removed: a later PUT of the same bytes checks its blobs (oldest dropped past MAX_CANDIDATES). */
  private readonly unpinned = new Set<string>()
  private timer: ReturnType<typeof setInterval> | undefined
  private running: Promise<void> | undefined
  freed = 0

  constructor (private readonly d: S3CollectorDeps) {}

  /** An S3 command released `id` (called from the state's apply). */
  release (id: string): void {
    if (this.fresh.size < MAX_CANDIDATES) this.fresh.add(id)
  }

  /**
   * A PUT on this node stored `id` and has not committed its record yet:
   * never collect it meanwhile. A PUT stores (and pins) before it gets
   * here, so a sweep may have unpinned the same id in between (the same
   * bytes, deleted and stored again): then its blobs are checked and
   * pinned again, or the PUT fails (503, the client retries) instead of
   * committing a record whose blobs are gone.
   */
  async storing<T> (id: string, fn: () => Promise<T>): Promise<T> {
    this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1)
    try {
      await this.collecting.get(id)
      if (this.unpinned.has(id)) {
        const m = await this.d.objects.localManifest(id)
        if (m === undefined) throw new S3Error(503, 'ServiceUnavailable', 'the object\'s blobs were freed (a delete of the same bytes) while it was stored; retry')
        await this.d.store.pin(`object:${id}`, [id, ...m.chunks.map(c => c.digest)])
        this.unpinned.delete(id)
      }
      return await fn()
    } finally {
      const n = (this.inFlight.get(id) ?? 1) - 1
      if (n === 0) this.inFlight.delete(id)
      else this.inFlight.set(id, n)
    }
  }

  start (): void {
    this.timer = setInterval(() => { if (this.running === undefined) this.running = this.sweep().catch((err: Error) => { this.d.log.warn({ err: err.message }, 's3: a sweep for deleted objects failed; the next one tries again') }).finally(() => { this.running = undefined }) }, this.d.delayMs)
  }

  async stop (): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    await this.running
  }

  /** Frees the candidates released at least one interval ago that nothing names now. */
  async sweep (): Promise<void> {
    const batch = this.aged
    this.aged = this.fresh
    this.fresh = new Set()
    if (batch.size === 0) return
    const named = new Set<string>()
    const t = this.d.table()
    for (const o of t.allObjects()) named.add(o.record.id)
    for (const u of t.allUploads()) for (const p of u.parts.values()) named.add(p.id)
    for (const id of batch) {
      if (named.has(id) || this.inFlight.has(id) || this.d.kvGet(`objects/${id}`) !== undefined) continue
      // The state as it is now, not at the start of the sweep: a record committed meanwhile names it.
      if (namedNow(this.d.table(), id)) continue
      let done!: () => void
      this.collecting.set(id, new Promise<void>(resolve => { done = resolve }))
      try {
        const manifest = await this.d.objects.readManifest(id).catch(() => undefined) // no manifest here: only the object's own blob to free
        await this.d.store.unpin(`object:${id}`)
        this.unpinned.add(id)
        if (this.unpinned.size > MAX_CANDIDATES) this.unpinned.delete(this.unpinned.values().next().value!)
        for (const digest of [id, ...(manifest?.chunks.map(c => c.digest) ?? [])]) {
          if (this.d.store.refCount(digest) === 0) await this.d.store.delete(digest)
        }
        this.freed++
      } catch (err) {
        this.d.log.warn({ id, err: (err as Error).message }, 's3: could not free a deleted object\'s blobs')
      } finally {
        this.collecting.delete(id)
        done()
      }
    }
  }
}

function namedNow (t: S3Table, id: string): boolean {
  for (const o of t.allObjects()) if (o.record.id === id) return true
  for (const u of t.allUploads()) for (const p of u.parts.values()) if (p.id === id) return true
  return false
}
