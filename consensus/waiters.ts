// Promises RaftNode hands out, keyed by what completes them: a log index
// being applied, a ReadIndex context being confirmed, a leader being elected.
// Each is bounded by an AbortSignal and, for reads and transfers, a deadline in ticks.
import { ProposalDroppedError } from './errors.js'

interface Pending<T> { resolve: (v: T) => void, reject: (e: Error) => void, cleanup: () => void }

function track<T> (signal: AbortSignal | undefined, onAbort: () => void): { promise: Promise<T>, pending: Pending<T> } {
  let resolve!: (v: T) => void
  let reject!: (e: Error) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  const abort = (): void => {
    onAbort()
    reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'))
  }
  signal?.addEventListener('abort', abort, { once: true })
  const cleanup = (): void => { signal?.removeEventListener('abort', abort) }
  return { promise, pending: { resolve: v => { cleanup(); resolve(v) }, reject: e => { cleanup(); reject(e) }, cleanup } }
}

export class Waiters {
  private readonly proposals = new Map<number, Pending<void> & { term: number }>()
  private readonly reads = new Map<string, Pending<number> & { deadline: number }>()
  private appliedWaits: Array<Pending<void> & { index: number }> = []
  private leaderWaits: Array<Pending<void> & { leader: string, deadline: number }> = []

  pendingProposals (): number { return this.proposals.size }

  waitApplied (index: number, term: number, signal?: AbortSignal): Promise<void> {
    const { promise, pending } = track<void>(signal, () => { if (this.proposals.get(index)?.term === term) this.proposals.delete(index) })
    // A new proposal at an index we were waiting on means our older entry there was truncated.
    this.proposals.get(index)?.reject(new ProposalDroppedError(`raft: the entry proposed at index ${index} was replaced before it committed; retry`))
    this.proposals.set(index, { ...pending, term })
    return promise
  }

  /** The entry at `index` was applied with `term`: ours if the term matches, overwritten otherwise. */
  applied (index: number, term: number): void {
    const p = this.proposals.get(index)
    if (p === undefined) return
    this.proposals.delete(index)
    if (p.term === term) p.resolve()
    else p.reject(new ProposalDroppedError(`raft: the entry proposed at index ${index} (term ${p.term}) was replaced by a new leader's entry (term ${term}); retry`))
  }

  appliedUpTo (index: number): void {
    for (const [i, p] of this.proposals) {
      if (i > index) continue
      // Covered by a snapshot from a new leader: whether ours committed is unknown.
      this.proposals.delete(i)
      p.reject(new ProposalDroppedError(`raft: the outcome of the entry proposed at index ${i} is unknown (a snapshot replaced the log); check and retry`))
    }
    const done = this.appliedWaits.filter(w => w.index <= index)
    this.appliedWaits = this.appliedWaits.filter(w => w.index > index)
    for (const w of done) w.resolve()
  }

  waitAppliedIndex (index: number, applied: number, signal?: AbortSignal): Promise<void> {
    if (applied >= index) return Promise.resolve()
    const { promise, pending } = track<void>(signal, () => { this.appliedWaits = this.appliedWaits.filter(w => w !== entry) })
    const entry = { ...pending, index }
    this.appliedWaits.push(entry)
    return promise
  }

  waitRead (ctx: string, deadline: number, signal?: AbortSignal): Promise<number> {
    const { promise, pending } = track<number>(signal, () => { this.reads.delete(ctx) })
    this.reads.set(ctx, { ...pending, deadline })
    return promise
  }

  dropRead (ctx: string): void {
    this.reads.get(ctx)?.cleanup()
    this.reads.delete(ctx)
  }

  readReady (ctx: string, index: number): void {
    const r = this.reads.get(ctx)
    if (r === undefined) return
    this.reads.delete(ctx)
    r.resolve(index)
  }

  rejectReads (err: Error): void {
    const all = [...this.reads.values()]
    this.reads.clear()
    for (const r of all) r.reject(err)
  }

  waitLeader (leader: string, deadline: number, signal?: AbortSignal): Promise<void> {
    const { promise, pending } = track<void>(signal, () => { this.leaderWaits = this.leaderWaits.filter(w => w !== entry) })
    const entry = { ...pending, leader, deadline }
    this.leaderWaits.push(entry)
    return promise
  }

  dropLeader (leader: string): void {
    const drop = this.leaderWaits.filter(w => w.leader === leader)
    this.leaderWaits = this.leaderWaits.filter(w => w.leader !== leader)
    for (const w of drop) w.cleanup()
  }

  leaderIs (leader: string): void {
    const done = this.leaderWaits.filter(w => w.leader === leader)
    this.leaderWaits = this.leaderWaits.filter(w => w.leader !== leader)
    for (const w of done) w.resolve()
  }

  expire (tick: number, mkErr: () => Error): void {
    for (const [ctx, r] of this.reads) {
      if (r.deadline > tick) continue
      this.reads.delete(ctx)
      r.reject(mkErr())
    }
    const late = this.leaderWaits.filter(w => w.deadline <= tick)
    this.leaderWaits = this.leaderWaits.filter(w => w.deadline > tick)
    for (const w of late) w.reject(mkErr())
  }

  rejectAll (err: Error): void {
    const props = [...this.proposals.values()]
    this.proposals.clear()
    for (const p of props) p.reject(err)
    this.rejectReads(err)
    const aw = this.appliedWaits
    this.appliedWaits = []
    for (const w of aw) w.reject(err)
    const lw = this.leaderWaits
    this.leaderWaits = []
    for (const w of lw) w.reject(err)
  }
}
