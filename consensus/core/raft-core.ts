// RaftCore: the Raft library's one handle on the state machine, as etcd-io/
// raft's RawNode is on its `raft`. Inputs (step, tick, propose, reads,
// transfers) go in; what to persist, send and apply comes out of ready() and
// is handed back with advance(). The state itself (raft.ts) stays private:
// callers read it through getters and read-only views, never assign it.
import type { ConfChange, ConfState, Entry, HardState, Message, ReadState, Ready, Role, Snapshot, SoftState } from '../types.js'
import { NotLeaderError, invariant } from '../errors.js'
import { resolveOptions, type RaftCoreOptions, type ResolvedOptions } from './config.js'
import { handleTransfer, stepLeader } from './leader.js'
import { Raft } from './raft.js'
import { coreStatus, type CoreStatus } from './status.js'

export type { CoreStatus, PeerStatus } from './status.js'

/** What a caller may read of the log: cursors and terms, nothing that changes it. */
export interface LogView {
  readonly committed: number
  readonly applied: number
  firstIndex: () => number
  lastIndex: () => number
  /** Term at `i`, or undefined when compacted away or beyond the last index. */
  term: (i: number) => number | undefined
  /** Entries in [lo, hi) up to maxBytes (at least one); null while they are being read from disk. */
  slice: (lo: number, hi: number, maxBytes: number) => Entry[] | null
}

export class RaftCore {
  readonly #r: Raft
  /** The hard and soft state of the last Ready, to tell what changed since. */
  #prevHardState: HardState
  #prevSoftState: SoftState
  /** Committed entries up to here were handed out in a Ready not yet advanced. */
  #applying: number

  /** Options are checked and their defaults resolved here, once (RaftConfigError names a bad one). */
  constructor (options: RaftCoreOptions) {
    this.#r = new Raft(resolveOptions(options))
    this.#prevHardState = this.#r.hardState()
    this.#prevSoftState = this.#r.softState()
    this.#applying = this.#r.log.applied
  }

  get id (): string { return this.#r.id }
  get opts (): Readonly<ResolvedOptions> { return this.#r.opts }
  get term (): number { return this.#r.term }
  get vote (): string { return this.#r.vote }
  /** The leader this node follows (itself when leading), null when it knows none. */
  get lead (): string | null { return this.#r.lead }
  get role (): Role { return this.#r.role }
  get log (): LogView { return this.#r.log }
  /** Reads confirmed since the last Ready (they come out in the next one). */
  get readStates (): readonly ReadState[] { return this.#r.readStates }
  confState (): ConfState { return this.#r.tracker.confState() }
  /** Whether an entry of the current term is committed (a new leader's reads wait for it, thesis §6.4). */
  committedInTerm (): boolean { return this.#r.committedInTerm() }
  status (): CoreStatus { return coreStatus(this.#r) }

  // ---- inputs ---------------------------------------------------------------

  tick (): void { this.#r.tick() }
  /** A follower's ticks that passed without a callback, counted short of a campaign (see Raft.catchUp). */
  catchUp (n: number): void { this.#r.catchUp(n) }
  step (m: Message): void { this.#r.step(m) }
  /** Starts an election now (what an election timeout does). */
  campaign (): void { this.#r.hup(false) }
  propose (data: Uint8Array): { index: number, term: number } { return this.#r.propose(data) }
  proposeConfChange (change: ConfChange): { index: number, term: number } { return this.#r.proposeConfChange(change) }

  /** Linearizable read (thesis §6.4): a ReadState with `context` comes out of a later Ready. */
  readIndex (context: string): void {
    const r = this.#r
    if (r.role === 'leader') {
      stepLeader(r, { type: 'readIndex', from: r.id, to: r.id, term: r.term, context })
      return
    }
    if (r.lead === null) throw new NotLeaderError(null, 'no raft leader is known to confirm the read (retry shortly)')
    r.send({ type: 'readIndex', from: r.id, to: r.lead, term: r.term, context })
  }

  transferLeader (to: string): void {
    const r = this.#r
    if (r.role === 'leader') {
      handleTransfer(r, to)
      return
    }
    if (r.lead === null) throw new NotLeaderError(null)
    r.send({ type: 'transferLeader', from: r.id, to: r.lead, term: r.term, target: to })
  }

  /**
   * Makes a snapshot of the state machine at `index` (<= applied) with `data`.
   * The driver must persist it with storage.compact() before entries go.
   */
  compact (index: number, data: Uint8Array): Snapshot {
    const r = this.#r
    invariant(index <= r.log.applied, `compact index ${index} above applied ${r.log.applied}`)
    const term = r.log.term(index)
    invariant(term !== undefined, `compact index ${index} has no known term`)
    let conf = r.confHistory[0]?.conf ?? r.tracker.confState()
    for (const h of r.confHistory) if (h.index <= index) conf = h.conf
    r.confHistory = [{ index, conf }, ...r.confHistory.filter(h => h.index > index)]
    return { meta: { index, term, confState: conf }, data }
  }

  /**
   * Fixes the election timeout drawn at the last state change (the next
   * change draws again). For scripted tests, as etcd's interaction env does.
   */
  setRandomizedElectionTimeout (ticks: number): void { this.#r.randomizedElectionTimeout = ticks }

  // ---- Ready / advance --------------------------------------------------------

  /**
   * What to do next, or null when there is nothing: persist `entries`,
   * `hardState` and `snapshot` in one batch BEFORE sending `messages` (votes
   * and acks promise durability), then apply `committedEntries`, then hand
   * the Ready back with advance(). One Ready is out at a time.
   */
  ready (): Ready | null {
    const r = this.#r
    r.flushBroadcast()
    const rd: Ready = { entries: r.log.unstableEntries(), committedEntries: [], messages: [], readStates: [] }
    const snap = r.log.unstable.snapshot
    if (snap !== undefined) rd.snapshot = snap
    const floor = Math.max(this.#applying, snap?.meta.index ?? 0)
    rd.committedEntries = r.log.nextCommittedEntries(r.opts.maxCommittedSizePerReady, floor) ?? []
    const hs = r.hardState()
    const ph = this.#prevHardState
    if (hs.term !== ph.term || hs.vote !== ph.vote || hs.commit !== ph.commit) rd.hardState = hs
    const ss = r.softState()
    if (ss.leader !== this.#prevSoftState.leader || ss.role !== this.#prevSoftState.role) rd.softState = ss
    if (rd.entries.length === 0 && rd.snapshot === undefined && rd.committedEntries.length === 0 &&
      rd.hardState === undefined && rd.softState === undefined && r.msgs.length === 0 && r.readStates.length === 0) {
      return null
    }
    rd.messages = r.msgs
    rd.readStates = r.readStates
    r.msgs = []
    r.readStates = []
    if (rd.hardState !== undefined) this.#prevHardState = rd.hardState
    if (rd.softState !== undefined) this.#prevSoftState = rd.softState
    const lastCommitted = rd.committedEntries[rd.committedEntries.length - 1]
    if (lastCommitted !== undefined) this.#applying = lastCommitted.index
    else if (snap !== undefined) this.#applying = Math.max(this.#applying, snap.meta.index)
    return rd
  }

  /** Marks a Ready done: its entries stable, its committed entries applied; conf changes take effect here. */
  advance (rd: Ready): void {
    const r = this.#r
    const last = rd.entries[rd.entries.length - 1]
    if (last !== undefined) r.log.unstable.stableTo(last.index, last.term)
    if (rd.snapshot !== undefined) {
      r.log.unstable.stableSnapTo(rd.snapshot.meta.index)
      if (rd.snapshot.meta.index > r.log.applied && rd.snapshot.meta.index <= r.log.committed) {
        r.log.appliedTo(rd.snapshot.meta.index)
      }
    }
    // A snapshot restored while this Ready was out supersedes its older committed entries.
    const restoring = r.log.unstable.snapshot?.meta.index ?? 0
    for (const e of rd.committedEntries) {
      if (e.index <= r.log.applied || e.index <= restoring) continue
      r.log.appliedTo(e.index)
      r.applyConfChange(e)
    }
    this.#applying = Math.max(this.#applying, r.log.applied)
  }
}
