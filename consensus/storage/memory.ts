// In-memory LogStorage for the simulator and tests. "Persisted" means what a
// save() wrote: a simulated crash rebuilds the core from this and nothing else.
import type { Entry, HardState, Snapshot } from '../types.js'
import { emptyConfState, emptyHardState, entrySize } from '../types.js'
import { CompactedError, invariant } from '../errors.js'
import type { InitialState, LogStorage, PersistRequest } from './types.js'

export class MemoryStorage implements LogStorage {
  private hs: HardState = emptyHardState()
  private snap: Snapshot = { meta: { index: 0, term: 0, confState: emptyConfState() }, data: new Uint8Array(0) }
  /** The entry before the first one kept (its term answers term(firstIndex - 1)). */
  private dummy = { index: 0, term: 0 }
  /** Entries after dummy.index. */
  private ents: Entry[] = []
  onAvailable: (() => void) | null = null

  initialState (): InitialState {
    return { hardState: { ...this.hs }, confState: structuredClone(this.snap.meta.confState) }
  }

  firstIndex (): number { return this.dummy.index + 1 }
  lastIndex (): number { return this.dummy.index + this.ents.length }

  term (index: number): number {
    const si = this.dummy.index
    if (index === si) return this.dummy.term
    if (index < si) throw new CompactedError(index, si + 1)
    const e = this.ents[index - si - 1]
    invariant(e !== undefined, `memory storage: no entry at ${index} (last ${this.lastIndex()})`)
    return e.term
  }

  entries (lo: number, hi: number, maxBytes: number): Entry[] {
    const si = this.dummy.index
    if (lo <= si) throw new CompactedError(lo, si + 1)
    invariant(hi <= this.lastIndex() + 1, `memory storage: entries up to ${hi} beyond last ${this.lastIndex()}`)
    const out: Entry[] = []
    let size = 0
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - si - 1]
      if (e === undefined) break
      size += entrySize(e)
      if (out.length > 0 && size > maxBytes) break
      out.push(e)
    }
    return out
  }

  snapshot (): Snapshot { return this.snap }

  /** What a synced batch would do, applied at once (the simulator calls this directly). */
  saveSync (req: PersistRequest): void {
    if (req.snapshot !== undefined) {
      this.snap = req.snapshot
      this.dummy = { index: req.snapshot.meta.index, term: req.snapshot.meta.term }
      this.ents = []
    }
    const first = req.entries[0]
    if (first !== undefined) {
      const si = this.dummy.index
      invariant(first.index > si && first.index <= this.lastIndex() + 1, `memory storage: append at ${first.index} leaves a gap after ${this.lastIndex()}`)
      this.ents = this.ents.slice(0, first.index - si - 1).concat(req.entries)
    }
    if (req.hardState !== undefined) this.hs = { ...req.hardState }
  }

  async save (req: PersistRequest): Promise<void> {
    this.saveSync(req)
  }

  compactSync (snapshot: Snapshot, keepEntries = 0): void {
    const ni = snapshot.meta.index
    if (ni <= this.snap.meta.index) return
    invariant(ni <= this.lastIndex(), `memory storage: compact at ${ni} beyond last ${this.lastIndex()}`)
    this.snap = snapshot
    const cut = Math.max(this.dummy.index, ni - Math.max(0, keepEntries))
    if (cut === this.dummy.index) return
    const term = this.term(cut)
    this.ents = this.ents.slice(cut - this.dummy.index)
    this.dummy = { index: cut, term }
  }

  async compact (snapshot: Snapshot, keepEntries = 0): Promise<void> {
    this.compactSync(snapshot, keepEntries)
  }

  async close (): Promise<void> {}

  /** Number of entries held (tests check compaction). */
  entryCount (): number { return this.ents.length }
}
