// RaftNode: drives a RaftCore with real time and durable storage. It owns the
// only timer (the tick, through a Ticker that a test may replace with its own
// clock), runs the Ready loop in etcd's order (persist, send, apply, advance),
// and turns proposals, reads and membership changes into promises. Messages
// go out through `send` and come in through receive().
import { EventEmitter } from 'node:events'
import { RaftCore, type CoreStatus } from './core/raft-core.js'
import { bootstrapStorage } from './storage/bootstrap.js'
import type { ConfChange, HardState, Message, Ready, Role } from './types.js'
import { MAX_ENTRY_BYTES } from './codec.js'
import { NotLeaderError, ProposalDroppedError, RaftStoppedError, RaftTimeoutError } from './errors.js'
import { REQUEST_TIMEOUT_ELECTIONS, resolveNodeOptions, type RaftNodeOptions, type ResolvedNodeOptions } from './node-options.js'
import { Waiters } from './waiters.js'
import { ReadBatcher } from './read-batch.js'

export interface LeaderChange { leader: string | null, term: number, role: Role }

export interface RaftNodeStatus {
  id: string
  term: number
  leader: string | null
  role: Role
  commit: number
  applied: number
  lastIndex: number
  snapshotIndex: number
  voters: string[]
  learners: string[]
  /** Leader only: what each peer is known to have. */
  progress: Record<string, { match: number, next: number, state: string, recentActive: boolean }>
  /** Messages dropped since start because their sender may not send them (not a voter or learner). */
  refusedMessages: number
}

export interface ConfigChange { index: number, change: ConfChange, voters: string[], learners: string[] }

export interface RaftNodeEvents {
  leaderChange: [LeaderChange]
  /** A membership change was applied here (`voters`/`learners` are the configuration after it). */
  configChange: [ConfigChange]
  fatal: [Error]
}

export class RaftNode extends EventEmitter<RaftNodeEvents> {
  private readonly o: ResolvedNodeOptions
  private core: RaftCore | null = null
  /** Stops the ticker; null while not ticking. */
  private stopTicking: (() => void) | null = null
  private ticks = 0
  private draining: Promise<void> | null = null
  private again = false
  private stopped = false
  private failed: Error | null = null
  private readSeq = 0
  private readonly waiters = new Waiters()
  private readonly reads = new ReadBatcher(() => this.readRound())
  private last: LeaderChange = { leader: null, term: 0, role: 'follower' }
  /** The term and vote last written to storage. */
  private savedHs: HardState = { term: 0, vote: '', commit: 0 }
  /** A hard state that only moved the commit index, not yet written: it goes with the next write. */
  private unsavedHs: HardState | undefined

  constructor (options: RaftNodeOptions) {
    super()
    this.o = resolveNodeOptions(options)
  }

  /** Recovers from storage (bootstrapping it if asked and empty), then starts ticking. */
  async start (): Promise<void> {
    if (this.core !== null) return
    const o = this.o
    if (o.bootstrap !== undefined) await bootstrapStorage(o.storage, o.bootstrap)
    const snap = o.storage.snapshot()
    if (snap.meta.index > 0) await o.restore(snap.data)
    this.core = new RaftCore(o.core)
    this.last = { leader: null, term: this.core.term, role: 'follower' }
    this.savedHs = o.storage.initialState().hardState
    o.storage.onAvailable = () => { this.schedule() }
    this.stopTicking = o.ticker((owed) => { this.tick(owed) }, o.tickMs)
    this.schedule()
    await this.draining
  }

  /** Stops ticking, fails pending requests with RaftStoppedError and waits for the Ready loop. Storage stays open. */
  async stop (): Promise<void> {
    this.stopped = true
    this.stopTicking?.()
    this.stopTicking = null
    this.o.storage.onAvailable = null
    this.waiters.rejectAll(new RaftStoppedError('raft node stopped'))
    await this.draining
    const hs = this.unsavedHs
    this.unsavedHs = undefined
    // Best effort, unsynced: a commit index lost here is only learnt again from the leader.
    if (hs !== undefined && this.failed === null) await this.o.storage.save({ entries: [], hardState: hs, sync: false }).catch(() => {})
  }

  /** Feeds a message from a peer (already decoded). */
  receive (msg: Message): void {
    if (this.core === null || this.stopped) return
    this.core.step(msg)
    this.schedule()
  }

  /** Resolves once `data` is committed and applied here; rejects with NotLeaderError on a follower. */
  async propose (data: Uint8Array, signal?: AbortSignal): Promise<{ index: number, term: number }> {
    const core = this.live()
    if (data.length === 0) throw new ProposalDroppedError('raft: empty proposals are reserved for the leader\'s no-op entry')
    if (data.length > MAX_ENTRY_BYTES) throw new ProposalDroppedError(`raft: proposal of ${data.length} bytes exceeds the ${MAX_ENTRY_BYTES} byte limit (split it)`)
    this.checkBackPressure()
    signal?.throwIfAborted()
    const at = core.propose(data)
    this.schedule()
    await this.waiters.waitApplied(at.index, at.term, signal)
    return at
  }

  /** Resolves when a linearizable read may be served from the local state machine. */
  async readIndex (signal?: AbortSignal): Promise<void> {
    this.live()
    signal?.throwIfAborted()
    // Concurrent reads share one round (read-batch.ts).
    const index = await this.reads.read(signal)
    const core = this.live()
    await this.waiters.waitAppliedIndex(index, core.log.applied, signal)
  }

  /** One ReadIndex round: resolves with the index a read may be served at once it is applied. */
  private readRound (): Promise<number> {
    const core = this.live()
    const ctx = `${this.o.id}:${++this.readSeq}`
    const p = this.waiters.waitRead(ctx, this.ticks + REQUEST_TIMEOUT_ELECTIONS * this.o.core.electionTicks)
    try {
      core.readIndex(ctx)
    } catch (err) {
      this.waiters.dropRead(ctx)
      throw err
    }
    this.schedule()
    return p
  }

  /** Asks the leader to hand leadership to `to`; resolves when `to` leads. */
  async transferLeadership (to: string, signal?: AbortSignal): Promise<void> {
    const core = this.live()
    if (this.last.leader === to) return
    const p = this.waiters.waitLeader(to, this.ticks + REQUEST_TIMEOUT_ELECTIONS * this.o.core.electionTicks, signal)
    try {
      core.transferLeader(to)
    } catch (err) {
      this.waiters.dropLeader(to)
      throw err
    }
    this.schedule()
    await p
  }

  addLearner (id: string, signal?: AbortSignal): Promise<{ index: number, term: number }> {
    return this.confChange({ type: 'addLearner', node: id }, signal)
  }

  promote (id: string, signal?: AbortSignal): Promise<{ index: number, term: number }> {
    return this.confChange({ type: 'promote', node: id }, signal)
  }

  removeServer (id: string, signal?: AbortSignal): Promise<{ index: number, term: number }> {
    return this.confChange({ type: 'remove', node: id }, signal)
  }

  private async confChange (cc: ConfChange, signal?: AbortSignal): Promise<{ index: number, term: number }> {
    const core = this.live()
    this.checkBackPressure()
    signal?.throwIfAborted()
    const at = core.proposeConfChange(cc)
    this.schedule()
    await this.waiters.waitApplied(at.index, at.term, signal)
    return at
  }

  status (): RaftNodeStatus {
    const core = this.core
    if (core === null) {
      return { id: this.o.id, term: 0, leader: null, role: 'follower', commit: 0, applied: 0, lastIndex: 0, snapshotIndex: 0, voters: [], learners: [], progress: {}, refusedMessages: 0 }
    }
    const s: CoreStatus = core.status()
    const progress: RaftNodeStatus['progress'] = {}
    for (const [id, p] of Object.entries(s.progress)) progress[id] = { match: p.match, next: p.next, state: p.state, recentActive: p.recentActive }
    return {
      id: s.id, term: s.term, leader: s.leader, role: s.role, commit: s.commit, applied: s.applied, lastIndex: s.lastIndex,
      snapshotIndex: this.o.storage.snapshot().meta.index, voters: s.config.voters, learners: s.config.learners, progress,
      refusedMessages: s.refusedMessages,
    }
  }

  // ---- loop -----------------------------------------------------------------

  private live (): RaftCore {
    if (this.failed !== null) throw this.failed
    if (this.core === null || this.stopped) throw new RaftStoppedError('raft node is not running')
    return this.core
  }

  private checkBackPressure (): void {
    const max = this.o.maxPendingProposals
    if (this.waiters.pendingProposals() >= max) throw new ProposalDroppedError(`raft: ${max} proposals are already waiting; retry later`)
  }

  /**
   * `owed`: the tick periods that passed (a wall-clock ticker's late
   * callback). A follower counts them short of a campaign (RaftCore's
   * catchUp): a survivor of a dead leader leaves its lease and campaigns
   * after an election timeout of real time, yet first reads the messages
   * that waited during the stall (another survivor's pre-vote, which it then
   * grants rather than splitting the vote). Everyone else counts
   * one per callback: a leader that counted a stall at once, before reading
   * the answers waiting in its sockets, would fail check-quorum and step
   * down (what reverted an earlier version, d2ead3f); a candidate's retries
   * are short already. A follower that stalled while its leader lives sends
   * at worst a pre-vote that voters hearing the leader ignore.
   */
  private tick (owed = 1): void {
    if (this.core === null || this.stopped) return
    const core = this.core
    if (owed > 1 && core.role === 'follower') {
      this.ticks += owed
      core.catchUp(owed)
    } else {
      this.ticks++
      core.tick()
    }
    this.waiters.expire(this.ticks, () => new RaftTimeoutError(`raft: no answer within ${REQUEST_TIMEOUT_ELECTIONS} election timeouts (leader ${this.last.leader ?? 'unknown'})`))
    this.schedule()
  }

  private schedule (): void {
    if (this.draining !== null) {
      this.again = true
      return
    }
    this.again = false
    this.draining = this.drain().finally(() => {
      this.draining = null
      // Input that arrived after the last ready() came back empty.
      if (this.again && !this.stopped && this.failed === null) this.schedule()
    })
  }

  /** Hands every Ready through persist, send, apply and advance, one at a time. */
  private async drain (): Promise<void> {
    for (;;) {
      const core = this.core
      if (core === null || this.stopped || this.failed !== null) return
      const rd = core.ready()
      if (rd === null) return
      try {
        await this.handle(core, rd)
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)))
        return
      }
    }
  }

  private async handle (core: RaftCore, rd: Ready): Promise<void> {
    const o = this.o
    o.trace?.('ready', rd.entries[0]?.index ?? 0)
    const hs = rd.hardState
    const voteChanged = hs !== undefined && (hs.term !== this.savedHs.term || hs.vote !== this.savedHs.vote)
    // A leader's appends and heartbeats may leave while its own log is being
    // written (thesis §10.2.1): they promise nothing about its disk, and its
    // own acknowledgement only counts towards a commit announced in a later
    // Ready, which waits for this one's write. Not when the commit index
    // already covers entries not yet on disk (a single voter commits at once).
    const early = core.role === 'leader' && !voteChanged && rd.snapshot === undefined && core.log.committed <= o.storage.lastIndex()
    if (early) this.sendAll(rd)
    // Committed entries already on this node's disk (from earlier Readies) are
    // applied while this Ready's write is under way, as etcd's apply loop does:
    // a leader's answer to a client does not wait for the next batch's fsync.
    const lastCommitted = rd.committedEntries[rd.committedEntries.length - 1]
    const applyFirst = rd.snapshot === undefined && lastCommitted !== undefined && lastCommitted.index <= o.storage.lastIndex() &&
      rd.committedEntries.every(e => e.type === 'normal')
    // 1. Persist in one batch BEFORE a follower's or candidate's message leaves (votes and acks promise durability).
    //    Synced when it carries entries, a snapshot, or a new term or vote. A hard state that only moves
    //    the commit index is not written on its own: it goes with the next batch (etcd's MustSync leaves it
    //    unsynced; the commit index is volatile state in Raft, and a crash that loses it only makes the
    //    node learn it again from the leader and apply those entries again from its snapshot).
    let saving: Promise<void> | undefined
    const sync = voteChanged || rd.entries.length > 0 || rd.snapshot !== undefined
    if (!sync && hs !== undefined) this.unsavedHs = hs
    else if (sync) {
      const state = hs ?? this.unsavedHs
      this.unsavedHs = undefined
      o.trace?.('persist', rd.entries[0]?.index ?? 0)
      saving = o.storage.save({ entries: rd.entries, ...(state === undefined ? {} : { hardState: state }), ...(rd.snapshot === undefined ? {} : { snapshot: rd.snapshot }) })
      saving.catch(() => { /* awaited below */ })
    }
    if (applyFirst) await this.applyEntries(rd)
    if (saving !== undefined) {
      await saving
      o.trace?.('persisted', rd.entries[0]?.index ?? 0)
      if (hs !== undefined) this.savedHs = hs
    }
    // 2. Send.
    if (!early) this.sendAll(rd)
    // 3. Apply.
    if (rd.snapshot !== undefined) await o.restore(rd.snapshot.data)
    if (!applyFirst) await this.applyEntries(rd)
    core.advance(rd)
    for (const e of rd.committedEntries) {
      this.waiters.applied(e.index, e.term)
      if (e.type === 'conf') {
        const cs = core.confState()
        this.emit('configChange', { index: e.index, change: e.change, voters: cs.voters, learners: cs.learners })
      }
    }
    if (rd.snapshot !== undefined) this.waiters.appliedUpTo(rd.snapshot.meta.index)
    this.waiters.appliedUpTo(core.log.applied)
    for (const rs of rd.readStates) this.waiters.readReady(rs.context, rs.index)
    this.noteLeadership(core)
    await this.maybeCompact(core)
  }

  /** Applies a Ready's committed entries and answers the proposals they carry. */
  private async applyEntries (rd: Ready): Promise<void> {
    for (const e of rd.committedEntries) {
      if (e.type === 'normal' && e.data.length > 0) await this.o.apply(e)
      if (e.type === 'normal') this.waiters.applied(e.index, e.term)
    }
    const last = rd.committedEntries[rd.committedEntries.length - 1]
    if (last !== undefined) this.o.trace?.('applied', last.index)
  }

  private sendAll (rd: Ready): void {
    if (rd.messages.length === 0) return
    for (const m of rd.messages) {
      try { this.o.send(m.to, m) } catch { /* the transport drops; Raft retries */ }
    }
    this.o.trace?.('sent', rd.entries[0]?.index ?? 0)
  }

  private noteLeadership (core: RaftCore): void {
    const now: LeaderChange = { leader: core.lead, term: core.term, role: core.role }
    if (now.leader === this.last.leader && now.term === this.last.term && now.role === this.last.role) return
    const leaderChanged = now.leader !== this.last.leader
    this.last = now
    if (leaderChanged) {
      this.waiters.rejectReads(new NotLeaderError(now.leader, `raft: leadership changed during the read (now ${now.leader ?? 'unknown'}); retry`))
      if (now.leader !== null) this.waiters.leaderIs(now.leader)
    }
    this.emit('leaderChange', now)
  }

  private async maybeCompact (core: RaftCore): Promise<void> {
    const threshold = this.o.snapshotThreshold
    const applied = core.log.applied
    if (applied - this.o.storage.snapshot().meta.index < threshold) return
    const data = await this.o.snapshot()
    await this.o.storage.compact(core.compact(applied, data), this.o.snapshotCatchUpEntries)
  }

  private fail (err: Error): void {
    this.failed = err
    this.stopTicking?.()
    this.stopTicking = null
    this.waiters.rejectAll(err)
    if (this.listenerCount('fatal') > 0) this.emit('fatal', err)
  }
}
