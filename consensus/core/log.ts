// The core's view of the log: persisted entries (read through LogReader) plus
// the unstable tail, with commit and apply cursors (etcd-io/raft `raftLog`).
import type { Entry, Snapshot } from '../types.js'
import { entrySize } from '../types.js'
import type { LogReader } from '../storage/types.js'
import { CompactedError, invariant } from '../errors.js'
import { Unstable } from './unstable.js'

export class RaftLog {
  readonly storage: LogReader
  readonly unstable: Unstable
  committed: number
  applied: number

  constructor (storage: LogReader) {
    this.storage = storage
    this.unstable = new Unstable(storage.lastIndex() + 1)
    // The state machine starts from the snapshot; entries kept below it are only for followers.
    const si = storage.snapshot().meta.index
    this.committed = si
    this.applied = si
  }

  firstIndex (): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex()
  }

  lastIndex (): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex()
  }

  /** Term at `i`, or undefined when `i` is compacted away or beyond the last index. */
  term (i: number): number | undefined {
    const dummy = this.firstIndex() - 1
    if (i < dummy || i > this.lastIndex()) return undefined
    const u = this.unstable.maybeTerm(i)
    if (u !== undefined) return u
    try {
      return this.storage.term(i)
    } catch (err) {
      if (err instanceof CompactedError) return undefined
      throw err
    }
  }

  lastTerm (): number {
    const t = this.term(this.lastIndex())
    invariant(t !== undefined, 'term of the last index is known')
    return t
  }

  matchTerm (i: number, t: number): boolean {
    return this.term(i) === t
  }

  /** Thesis §5.4.1: a log is at least as up to date if its last term is higher, or equal with a longer log. */
  isUpToDate (lastIndex: number, term: number): boolean {
    const lt = this.lastTerm()
    return term > lt || (term === lt && lastIndex >= this.lastIndex())
  }

  /** Follower side of AppendEntries; returns the last new index, or undefined if (index, logTerm) does not match. */
  maybeAppend (index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined
    const lastNew = index + ents.length
    const ci = this.findConflict(ents)
    if (ci !== 0) {
      invariant(ci > this.committed, `conflict at ${ci} is not below commit ${this.committed}`)
      this.append(ents.slice(ci - index - 1))
    }
    this.commitTo(Math.min(committed, lastNew))
    return lastNew
  }

  append (ents: Entry[]): number {
    const first = ents[0]
    if (first === undefined) return this.lastIndex()
    invariant(first.index - 1 >= this.committed, `append after ${first.index - 1} would overwrite commit ${this.committed}`)
    this.unstable.truncateAndAppend(ents)
    return this.lastIndex()
  }

  /** First index whose term differs from ours (or the first new index), 0 if all already present. */
  findConflict (ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index
    }
    return 0
  }

  /**
   * Largest index <= `index` whose term is <= `term`, with its term: the leader
   * uses it on a reject hint to skip whole terms (etcd findConflictByTerm).
   */
  findConflictByTerm (index: number, term: number): [number, number] {
    let i = Math.min(index, this.lastIndex())
    for (; ;) {
      const t = this.term(i)
      if (t === undefined) return [i, 0]
      if (t <= term) return [i, t]
      i--
    }
  }

  unstableEntries (): Entry[] {
    return this.unstable.entries.slice()
  }

  /** Committed entries not yet applied, bounded by maxBytes; null if not in memory yet. */
  nextCommittedEntries (maxBytes: number, appliedFloor: number): Entry[] | null {
    const lo = Math.max(appliedFloor + 1, this.firstIndex())
    const hi = this.committed + 1
    if (lo >= hi) return []
    return this.slice(lo, hi, maxBytes)
  }

  commitTo (c: number): void {
    if (c > this.committed) {
      invariant(c <= this.lastIndex(), `commit ${c} beyond last index ${this.lastIndex()}`)
      this.committed = c
    }
  }

  appliedTo (i: number): void {
    if (i === 0) return
    invariant(i <= this.committed && i >= this.applied, `applied ${i} outside [${this.applied}, ${this.committed}]`)
    this.applied = i
  }

  maybeCommit (maxIndex: number, term: number): boolean {
    // Thesis §3.6.2: only entries of the current term are committed by counting replicas.
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex)
      return true
    }
    return false
  }

  restore (s: Snapshot): void {
    this.committed = s.meta.index
    this.unstable.restore(s)
  }

  snapshot (): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot()
  }

  /** Index of the latest snapshot (pending or stored). */
  snapshotIndex (): number {
    return this.snapshot().meta.index
  }

  /** Entries from lo to the end, bounded; null when not in memory (fetch started). */
  entriesFrom (lo: number, maxBytes: number): Entry[] | null {
    if (lo > this.lastIndex()) return []
    return this.slice(lo, this.lastIndex() + 1, maxBytes)
  }

  /** Entries [lo, hi) up to maxBytes (always at least one); throws CompactedError below firstIndex. */
  slice (lo: number, hi: number, maxBytes: number): Entry[] | null {
    const fi = this.firstIndex()
    if (lo < fi) throw new CompactedError(lo, fi)
    invariant(hi <= this.lastIndex() + 1 && lo <= hi, `slice [${lo},${hi}) beyond last ${this.lastIndex()}`)
    if (lo === hi) return []
    const out: Entry[] = []
    const uoff = this.unstable.offset
    if (lo < uoff) {
      const stored = this.storage.entries(lo, Math.min(hi, uoff), maxBytes)
      if (stored === null) return null
      out.push(...stored)
      if (stored.length < Math.min(hi, uoff) - lo) return out // size limit reached
    }
    if (hi > uoff) {
      const u = this.unstable.slice(Math.max(lo, uoff), hi)
      let size = out.reduce((s, e) => s + entrySize(e), 0)
      for (const e of u) {
        size += entrySize(e)
        if (out.length > 0 && size > maxBytes) break
        out.push(e)
      }
    }
    return out
  }
}
