// The leader's view of one follower: what it has (match), what to send next
// (next), and how to send it: probing one append at a time, a pipeline bounded
// by Inflights, or a snapshot transfer (etcd-io/raft `tracker.Progress`).

export type ProgressState = 'probe' | 'replicate' | 'snapshot'

/** A bounded window of appends sent but not acknowledged (by count and bytes). */
export class Inflights {
  private readonly items: Array<{ index: number, bytes: number }> = []
  private bytes = 0
  constructor (readonly maxCount: number, readonly maxBytes: number) {}

  add (index: number, bytes: number): void {
    this.items.push({ index, bytes })
    this.bytes += bytes
  }

  /** Frees every append whose last index is <= `to`. */
  freeLE (to: number): void {
    let n = 0
    while (n < this.items.length && (this.items[n]?.index ?? Infinity) <= to) {
      this.bytes -= this.items[n]?.bytes ?? 0
      n++
    }
    if (n > 0) this.items.splice(0, n)
  }

  /** Frees the oldest append; lets a stalled pipeline probe again after a heartbeat. */
  freeFirstOne (): void {
    const first = this.items.shift()
    if (first !== undefined) this.bytes -= first.bytes
  }

  full (): boolean {
    return this.items.length >= this.maxCount || (this.maxBytes > 0 && this.bytes >= this.maxBytes)
  }

  count (): number { return this.items.length }

  reset (): void {
    this.items.length = 0
    this.bytes = 0
  }
}

export class Progress {
  match = 0
  next: number
  state: ProgressState = 'probe'
  /** In probe state: an append is outstanding; cleared by a heartbeat response. */
  probeSent = false
  /** The highest commit index sent to it (in an append or heartbeat) this term. */
  sentCommit = 0
  /** Heard from it since the last check-quorum round. */
  recentActive = false
  isLearner: boolean
  readonly inflights: Inflights
  /** Snapshot transfer: the snapshot index being sent and the next byte to send. */
  pendingSnapshot = 0
  snapOffset = 0
  /** Ticks since the last chunk was (re)sent, to resend a lost chunk. */
  snapIdleTicks = 0

  constructor (next: number, isLearner: boolean, maxInflight: number, maxInflightBytes: number) {
    this.next = next
    this.isLearner = isLearner
    this.inflights = new Inflights(maxInflight, maxInflightBytes)
  }

  private resetState (state: ProgressState): void {
    this.probeSent = false
    this.pendingSnapshot = 0
    this.snapOffset = 0
    this.snapIdleTicks = 0
    this.state = state
    this.inflights.reset()
  }

  becomeProbe (): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot
      this.resetState('probe')
      this.next = Math.max(this.match + 1, pending + 1)
    } else {
      this.resetState('probe')
      this.next = this.match + 1
    }
  }

  becomeReplicate (): void {
    this.resetState('replicate')
    this.next = this.match + 1
  }

  becomeSnapshot (snapIndex: number): void {
    this.resetState('snapshot')
    this.pendingSnapshot = snapIndex
  }

  /** An ack up to n; returns whether it moved match forward. */
  maybeUpdate (n: number): boolean {
    let updated = false
    if (this.match < n) {
      this.match = n
      updated = true
      this.probeSent = false
    }
    this.next = Math.max(this.next, n + 1)
    return updated
  }

  /** Optimistic pipelining: the next append starts after what was just sent. */
  sentEntries (lastIndex: number, count: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = lastIndex + 1
        this.inflights.add(lastIndex, bytes)
      }
    } else if (this.state === 'probe') {
      this.probeSent = true
    }
  }

  /**
   * A rejection of the append after `rejected`; `matchHint` is the index the
   * leader computed from the follower's hint. Returns false for stale rejections.
   */
  maybeDecrTo (rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false
      this.next = this.match + 1
      return true
    }
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1)
    this.probeSent = false
    return true
  }

  isPaused (): boolean {
    switch (this.state) {
      case 'probe': return this.probeSent
      case 'replicate': return this.inflights.full()
      case 'snapshot': return true
    }
  }
}
