// Entries and a snapshot the core has accepted but the driver has not yet
// reported persisted (etcd-io/raft `unstable`). Once `advance()` says they are
// on disk they move to the storage's read side and are dropped here.
import type { Entry, Snapshot } from '../types.js'
import { invariant } from '../errors.js'

export class Unstable {
  snapshot: Snapshot | undefined
  entries: Entry[] = []
  /** Index of entries[0]. */
  offset: number

  constructor (offset: number) {
    this.offset = offset
  }

  maybeFirstIndex (): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.meta.index + 1
  }

  maybeLastIndex (): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1
    return this.snapshot?.meta.index
  }

  maybeTerm (i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.meta.index === i) return this.snapshot.meta.term
      return undefined
    }
    const last = this.maybeLastIndex()
    if (last === undefined || i > last) return undefined
    return this.entries[i - this.offset]?.term
  }

  /** Entries up to (i, t) are persisted; drop them if they are still the same entries. */
  stableTo (i: number, t: number): void {
    const gt = this.maybeTerm(i)
    if (gt === t && i >= this.offset) {
      this.entries = this.entries.slice(i + 1 - this.offset)
      this.offset = i + 1
    }
  }

  stableSnapTo (i: number): void {
    if (this.snapshot !== undefined && this.snapshot.meta.index === i) this.snapshot = undefined
  }

  restore (s: Snapshot): void {
    this.offset = s.meta.index + 1
    this.entries = []
    this.snapshot = s
  }

  truncateAndAppend (ents: Entry[]): void {
    const first = ents[0]
    if (first === undefined) return
    const after = first.index
    if (after === this.offset + this.entries.length) {
      this.entries.push(...ents)
    } else if (after <= this.offset) {
      // The new entries replace everything unstable (and, once persisted, the stored tail).
      this.offset = after
      this.entries = ents.slice()
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents)
    }
  }

  slice (lo: number, hi: number): Entry[] {
    invariant(lo >= this.offset && hi <= this.offset + this.entries.length && lo <= hi, `unstable slice [${lo},${hi}) out of [${this.offset},${this.offset + this.entries.length})`)
    return this.entries.slice(lo - this.offset, hi - this.offset)
  }
}
