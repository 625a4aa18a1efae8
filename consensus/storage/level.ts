// RaftStorage: the durable log on `level` (LevelDB). Every Ready is one atomic
// batch written with sync, so a kill -9 leaves either the old or the new
// state. Memory is bounded: the newest entries stay in a window, older ones
// are read back from disk on demand; terms of all entries are kept compactly.
import { Level } from 'level'
import type { Entry, HardState, Snapshot } from '../types.js'
import { emptyConfState, emptyHardState, entrySize } from '../types.js'
import { CompactedError, RaftStorageError, invariant } from '../errors.js'
import type { InitialState, LogStorage, PersistRequest } from './types.js'
import { ENTRY_PREFIX, KEY_HARD_STATE, KEY_LOG_START, KEY_SNAPSHOT, decodeEntry, decodeHardState, decodeLogStart, decodeSnapshot, encodeRecord, entryKey } from './records.js'
import { TermIndex } from './term-index.js'

/** Newest entries kept in memory (count); the leader serves followers that keep up from here. */
export const DEFAULT_WINDOW_ENTRIES = 4096
/** ...and at most this many bytes of them. */
export const DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024
/** Older entries read back from disk that stay cached for lagging followers. */
export const DEFAULT_READ_CACHE_ENTRIES = 4096
/** Entries read per background fetch. */
export const DEFAULT_FETCH_BATCH = 1024

export interface RaftStorageOptions {
  windowEntries?: number
  windowBytes?: number
  readCacheEntries?: number
  fetchBatch?: number
  /** Told after each synced batch of save(): the entries it carried and how long the write took. */
  onSynced?: (s: { entries: number, seconds: number }) => void
}

type Batch = Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }>

export class RaftStorage implements LogStorage {
  onAvailable: (() => void) | null = null
  private hs: HardState = emptyHardState()
  private snap: Snapshot = { meta: { index: 0, term: 0, confState: emptyConfState() }, data: new Uint8Array(0) }
  /** The entry before the first one kept: its index and term (persisted as KEY_LOG_START). */
  private dummy = { index: 0, term: 0 }
  private last = 0
  private readonly terms = new TermIndex()
  /** Entries [winStart, last] (the newest ones). */
  private window: Entry[] = []
  private winStart = 1
  private winBytes = 0
  private readonly cache = new Map<number, Entry>()
  private fetching = false
  /** Bumped whenever stored entries are replaced, so a fetch in flight discards what it read. */
  private generation = 0
  private closed = false
  private readonly windowEntries: number
  private readonly windowBytes: number
  private readonly readCacheEntries: number
  private readonly fetchBatch: number
  private readonly onSynced: RaftStorageOptions['onSynced']

  private constructor (private readonly db: Level<string, Uint8Array>, o: RaftStorageOptions) {
    this.windowEntries = o.windowEntries ?? DEFAULT_WINDOW_ENTRIES
    this.windowBytes = o.windowBytes ?? DEFAULT_WINDOW_BYTES
    this.readCacheEntries = o.readCacheEntries ?? DEFAULT_READ_CACHE_ENTRIES
    this.fetchBatch = o.fetchBatch ?? DEFAULT_FETCH_BATCH
    this.onSynced = o.onSynced
  }

  /** Opens (creating if needed) the log in `dir` and recovers its state. */
  static async open (dir: string, options: RaftStorageOptions = {}): Promise<RaftStorage> {
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' })
    await db.open()
    const s = new RaftStorage(db, options)
    try {
      await s.recover()
    } catch (err) {
      await db.close()
      throw err
    }
    return s
  }

  private async recover (): Promise<void> {
    const hs = await this.db.get(KEY_HARD_STATE)
    if (hs !== undefined) this.hs = decodeHardState(hs)
    const snap = await this.db.get(KEY_SNAPSHOT)
    if (snap !== undefined) this.snap = decodeSnapshot(snap)
    const start = await this.db.get(KEY_LOG_START)
    this.dummy = start !== undefined ? decodeLogStart(start) : { index: this.snap.meta.index, term: this.snap.meta.term }
    const si = this.dummy.index
    this.last = si
    this.winStart = si + 1
    for await (const [key, value] of this.db.iterator({ gt: entryKey(si), lt: ENTRY_PREFIX + '~' })) {
      const e = decodeEntry(value)
      if (key !== entryKey(e.index)) throw new RaftStorageError(`raft storage: key ${key} holds entry ${e.index}; the data directory is corrupt`)
      if (e.index !== this.last + 1) throw new RaftStorageError(`raft storage: entry ${e.index} follows ${this.last} (gap); the data directory is corrupt`)
      this.terms.append(e.index, e.term)
      this.last = e.index
      this.pushWindow(e)
    }
    if (this.hs.commit > this.last) throw new RaftStorageError(`raft storage: commit ${this.hs.commit} beyond last entry ${this.last}; the data directory is corrupt`)
  }

  initialState (): InitialState {
    return { hardState: { ...this.hs }, confState: structuredClone(this.snap.meta.confState) }
  }

  firstIndex (): number { return this.dummy.index + 1 }
  lastIndex (): number { return this.last }
  snapshot (): Snapshot { return this.snap }

  term (index: number): number {
    const si = this.dummy.index
    if (index === si) return this.dummy.term
    if (index < si) throw new CompactedError(index, si + 1)
    invariant(index <= this.last, `raft storage: term of ${index} beyond last ${this.last}`)
    return this.terms.termAt(index)
  }

  entries (lo: number, hi: number, maxBytes: number): Entry[] | null {
    const si = this.dummy.index
    if (lo <= si) throw new CompactedError(lo, si + 1)
    invariant(hi <= this.last + 1, `raft storage: entries up to ${hi} beyond last ${this.last}`)
    const out: Entry[] = []
    let size = 0
    for (let i = lo; i < hi; i++) {
      const e = i >= this.winStart ? this.window[i - this.winStart] : this.cache.get(i)
      if (e === undefined) {
        if (out.length > 0) return out // return what is in memory; the rest follows later
        this.startFetch(i, Math.min(hi, this.winStart))
        return null
      }
      size += entrySize(e)
      if (out.length > 0 && size > maxBytes) break
      out.push(e)
    }
    return out
  }

  private startFetch (lo: number, hi: number): void {
    if (this.fetching || this.closed) return
    this.fetching = true
    const gen = this.generation
    const end = Math.min(hi, lo + this.fetchBatch)
    const done = (): void => {
      this.fetching = false
      this.onAvailable?.()
    }
    this.readRange(lo, end).then(ents => {
      if (gen !== this.generation || this.closed) return
      if (this.cache.size + ents.length > this.readCacheEntries) this.cache.clear()
      for (const e of ents) this.cache.set(e.index, e)
    }).catch(() => { /* a failed read is retried on the next request */ }).finally(done)
  }

  private async readRange (lo: number, hi: number): Promise<Entry[]> {
    const out: Entry[] = []
    for await (const [, v] of this.db.iterator({ gte: entryKey(lo), lt: entryKey(hi) })) out.push(decodeEntry(v))
    return out
  }

  async save (req: PersistRequest): Promise<void> {
    const ops: Batch = []
    let first = this.firstIndex()
    let last = this.last
    if (req.snapshot !== undefined) {
      // Installing a leader's snapshot discards the whole log.
      for (let i = first; i <= last; i++) ops.push({ type: 'del', key: entryKey(i) })
      ops.push({ type: 'put', key: KEY_SNAPSHOT, value: encodeRecord(req.snapshot) })
      ops.push({ type: 'put', key: KEY_LOG_START, value: encodeRecord({ index: req.snapshot.meta.index, term: req.snapshot.meta.term }) })
      first = req.snapshot.meta.index + 1
      last = req.snapshot.meta.index
    }
    const f = req.entries[0]
    if (f !== undefined) {
      invariant(f.index >= first && f.index <= last + 1, `raft storage: append at ${f.index} outside [${first}, ${last + 1}]`)
      const newLast = f.index + req.entries.length - 1
      for (const e of req.entries) ops.push({ type: 'put', key: entryKey(e.index), value: encodeRecord(e) })
      // Conflicting suffix beyond the new end is truncated in the same batch.
      for (let i = newLast + 1; i <= last; i++) ops.push({ type: 'del', key: entryKey(i) })
    }
    if (req.hardState !== undefined) ops.push({ type: 'put', key: KEY_HARD_STATE, value: encodeRecord(req.hardState) })
    if (ops.length === 0) return
    const t0 = performance.now()
    const sync = req.sync !== false
    await this.db.batch(ops, { sync })
    if (sync) this.onSynced?.({ entries: req.entries.length, seconds: (performance.now() - t0) / 1000 })
    // On disk: now make the read side match.
    if (req.snapshot !== undefined) {
      this.snap = req.snapshot
      this.dummy = { index: req.snapshot.meta.index, term: req.snapshot.meta.term }
      this.last = req.snapshot.meta.index
      this.terms.clear()
      this.window = []
      this.winBytes = 0
      this.winStart = this.last + 1
      this.cache.clear()
      this.generation++
    }
    if (f !== undefined) {
      if (f.index <= this.last) this.truncateFrom(f.index)
      for (const e of req.entries) {
        this.terms.append(e.index, e.term)
        this.pushWindow(e)
      }
      this.last = f.index + req.entries.length - 1
    }
    if (req.hardState !== undefined) this.hs = { ...req.hardState }
  }

  private truncateFrom (index: number): void {
    this.generation++
    this.terms.truncateFrom(index)
    for (const k of [...this.cache.keys()]) if (k >= index) this.cache.delete(k)
    if (index <= this.winStart) {
      this.window = []
      this.winBytes = 0
      this.winStart = index
    } else {
      for (const e of this.window.splice(index - this.winStart)) this.winBytes -= entrySize(e)
    }
    this.last = index - 1
  }

  private pushWindow (e: Entry): void {
    if (this.window.length === 0) this.winStart = e.index
    this.window.push(e)
    this.winBytes += entrySize(e)
    while (this.window.length > 1 && (this.window.length > this.windowEntries || this.winBytes > this.windowBytes)) {
      const old = this.window.shift()
      if (old !== undefined) this.winBytes -= entrySize(old)
      this.winStart++
    }
  }

  async compact (snapshot: Snapshot, keepEntries = 0): Promise<void> {
    const ni = snapshot.meta.index
    if (ni <= this.snap.meta.index) return
    invariant(ni <= this.last, `raft storage: compact at ${ni} beyond last ${this.last}`)
    const cut = Math.max(this.dummy.index, ni - Math.max(0, keepEntries))
    const cutTerm = this.term(cut)
    const ops: Batch = [
      { type: 'put', key: KEY_SNAPSHOT, value: encodeRecord(snapshot) },
      { type: 'put', key: KEY_LOG_START, value: encodeRecord({ index: cut, term: cutTerm }) },
    ]
    for (let i = this.dummy.index + 1; i <= cut; i++) ops.push({ type: 'del', key: entryKey(i) })
    await this.db.batch(ops, { sync: true })
    this.snap = snapshot
    this.dummy = { index: cut, term: cutTerm }
    this.terms.compactTo(cut)
    for (const k of [...this.cache.keys()]) if (k <= cut) this.cache.delete(k)
    while (this.window.length > 0 && this.winStart <= cut) {
      const old = this.window.shift()
      if (old !== undefined) this.winBytes -= entrySize(old)
      this.winStart++
    }
    if (this.window.length === 0) this.winStart = Math.max(this.winStart, cut + 1)
  }

  /** Entries currently held in memory (window + read cache), for tests of the memory bound. */
  memoryEntries (): number { return this.window.length + this.cache.size }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.db.close()
  }
}
