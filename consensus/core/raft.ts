// Raft: the I/O-free state machine behind RaftCore (raft-core.ts), as
// etcd-io/raft's `raft` is behind `RawNode`. Its state is open to the role
// files (through RoleContext) and to the facade, and to nothing else: this
// module is not exported from the package. Time is logical (ticks) and
// randomness is injected, so a seeded simulator replays any run exactly.
import type { ConfChange, ConfState, Entry, HardState, Message, ReadState, Role, SoftState } from '../types.js'
import { ConfChangeError, NotLeaderError, ProposalDroppedError, invariant } from '../errors.js'
import { RaftLog } from './log.js'
import { ProgressTracker, applyConfChange, confChangeProblem } from './tracker.js'
import { ReadOnly } from './read-only.js'
import type { ResolvedOptions } from './config.js'
import { bcastAppend, leaderTick, stepLeader } from './leader.js'
import { stepCandidate, stepFollower } from './follower.js'
import type { RoleContext, SnapshotReceive } from './role-context.js'

export type StepFn = (r: Raft, m: Message) => void

/**
 * Messages only a leader or a candidate sends. Taking one from a peer makes
 * this node follow it, adopt its term, accept its entries or campaign, so it
 * must come from a voter of our configuration: an admitted non-voter (a
 * learner, a removed server, any member of the network) must not be able to
 * raise our term or write our log.
 */
const FROM_VOTERS: ReadonlySet<Message['type']> = new Set(['app', 'heartbeat', 'snap', 'timeoutNow', 'vote', 'preVote', 'readIndexResp', 'transferLeader'])
const FROM_LEADER: ReadonlySet<Message['type']> = new Set(['app', 'heartbeat', 'snap'])

export class Raft implements RoleContext {
  readonly id: string
  readonly opts: ResolvedOptions
  readonly log: RaftLog
  readonly tracker: ProgressTracker
  readonly readOnly: ReadOnly
  term = 0
  vote = ''
  lead: string | null = null
  role: Role = 'follower'
  electionElapsed = 0
  /** Ticks since a voter of our configuration last spoke as leader (see senderAllowed). */
  strangerElapsed = 0
  /** Messages dropped because their sender may not send them (a counter for status and metrics). */
  refusedMessages = 0
  heartbeatElapsed = 0
  learnerHeartbeatElapsed = 0
  randomizedElectionTimeout = 0
  /** Ticks after which an unfinished campaign starts again (0: a whole election timeout; see campaignRetryTicks). */
  campaignRetry = 0
  leadTransferee: string | null = null
  /** No new configuration change may be proposed until this index is applied. */
  pendingConfIndex = 0
  /** ReadIndex requests that arrived before this leader committed an entry of its term. */
  pendingReadIndex: Array<{ context: string, from: string }> = []
  /** Proposals appended since the last ready(); replicated in one batch per follower. */
  broadcastPending = false
  msgs: Message[] = []
  readStates: ReadState[] = []
  snapRecv: SnapshotReceive | null = null
  /** Configurations by the index that installed them, for compaction (pruned there). */
  confHistory: Array<{ index: number, conf: ConfState }>
  private stepFn: StepFn = stepFollower

  constructor (opts: ResolvedOptions) {
    this.opts = opts
    this.id = this.opts.id
    this.log = new RaftLog(this.opts.storage)
    this.tracker = new ProgressTracker(this.opts.maxInflightMsgs, this.opts.maxInflightBytes)
    this.readOnly = new ReadOnly(this.opts.maxPendingReads)
    const { hardState, confState } = this.opts.storage.initialState()
    const snapIndex = this.opts.storage.snapshot().meta.index
    this.tracker.setConfig(confState, this.log.lastIndex() + 1)
    this.confHistory = [{ index: snapIndex, conf: confState }]
    if (hardState.commit > 0) {
      invariant(hardState.commit <= this.log.lastIndex(), `stored commit ${hardState.commit} beyond last index ${this.log.lastIndex()}`)
      this.log.commitTo(hardState.commit)
    }
    this.term = hardState.term
    this.vote = hardState.vote
    if (this.opts.applied !== undefined && this.opts.applied > this.log.applied) this.log.appliedTo(Math.min(this.opts.applied, this.log.committed))
    this.becomeFollower(this.term, null)
  }

  // ---- state transitions -------------------------------------------------

  private reset (term: number): void {
    if (this.term !== term) {
      this.term = term
      this.vote = ''
    }
    this.lead = null
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.learnerHeartbeatElapsed = 0
    this.resetRandomizedElectionTimeout()
    this.leadTransferee = null
    this.tracker.resetVotes()
    const last = this.log.lastIndex()
    this.tracker.setConfig(this.tracker.confState(), last + 1)
    for (const [id, p] of this.tracker.progress) {
      p.match = id === this.id ? last : 0
      p.becomeProbe()
      p.next = last + 1
      p.recentActive = true
      p.sentCommit = 0
    }
    this.pendingConfIndex = 0
    this.readOnly.reset()
    this.pendingReadIndex = []
    this.broadcastPending = false
  }

  resetRandomizedElectionTimeout (): void {
    this.randomizedElectionTimeout = this.opts.electionTicks + Math.floor(this.opts.random() * this.opts.electionJitterTicks)
  }

  becomeFollower (term: number, lead: string | null): void {
    this.stepFn = stepFollower
    this.reset(term)
    this.lead = lead
    this.role = 'follower'
  }

  becomePreCandidate (): void {
    invariant(this.role !== 'leader', 'leader cannot become pre-candidate')
    // Pre-vote does not change the term or the vote; it only asks whether we could win.
    this.stepFn = stepCandidate
    this.tracker.resetVotes()
    this.lead = null
    this.role = 'preCandidate'
  }

  becomeCandidate (): void {
    invariant(this.role !== 'leader', 'leader cannot become candidate')
    this.stepFn = stepCandidate
    this.reset(this.term + 1)
    this.vote = this.id
    this.role = 'candidate'
  }

  becomeLeader (): void {
    invariant(this.role === 'candidate' || this.role === 'leader', 'only a candidate becomes leader')
    this.stepFn = stepLeader
    this.reset(this.term)
    this.lead = this.id
    this.role = 'leader'
    const self = this.tracker.progress.get(this.id)
    self?.becomeReplicate()
    // Conf changes wait until this term's first entry is applied (fixes the single-server change bug, raft-dev 2015).
    this.pendingConfIndex = this.log.lastIndex()
    // Thesis §3.6.2: an empty entry of the new term lets the leader learn and advance the commit index.
    this.appendEntries([{ type: 'normal', term: 0, index: 0, data: new Uint8Array(0) }])
  }

  // ---- inputs ------------------------------------------------------------

  tick (): void {
    if (this.role === 'leader') {
      this.strangerElapsed = 0
      leaderTick(this)
      return
    }
    this.electionElapsed++
    this.strangerElapsed++
    if (this.promotable() && this.electionElapsed >= this.campaignRetry && this.retryCampaign()) {
      this.electionElapsed = 0
      this.hup(false)
      return
    }
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0
      this.hup(false)
    }
  }

  /**
   * A follower counts `n` ticks that passed while its process stalled (a late
   * timer), up to one short of its election timeout. If the timeout passed, it
   * forgets the leader (its lease ends) but campaigns only at the next tick(),
   * after reading what waited meanwhile: it grants another survivor's pending
   * pre-vote instead of splitting the vote. One already at the brink campaigns
   * now, so a process whose every callback is late still campaigns.
   */
  catchUp (n: number): void {
    if (this.role !== 'follower') return
    const brink = this.randomizedElectionTimeout - 1
    if (this.electionElapsed >= brink) { this.tick(); return }
    this.strangerElapsed += n
    if (this.electionElapsed + n < this.randomizedElectionTimeout) { this.electionElapsed += n; return }
    // The timeout passed during the stall: the leader is not known to live any more (what a
    // campaign would also say), so the lease ends even where the timeout drawn was electionTicks.
    this.electionElapsed = brink
    this.lead = null
  }

  /**
   * Whether an unfinished campaign starts again after campaignRetry ticks
   * rather than a whole election timeout: a pre-candidate (its pre-vote
   * changes no term), and a candidate that a voter has refused while others
   * have not answered. Right after a leader dies the survivors' timeouts,
   * reset by the same last heartbeat, often fall within one vote's round
   * trip: both pre-votes are granted, both stand for the same term, each
   * refuses the other and neither can win (a split vote). Waiting a whole
   * timeout for that is what gave raft-failover its second elections. The
   * retry goes through pre-vote, so it raises no term unless it can win; a
   * candidate that nobody has refused keeps its whole timeout (its votes
   * may just be slow).
   */
  private retryCampaign (): boolean {
    if (this.campaignRetry === 0) return false
    if (this.role === 'preCandidate') return true
    if (this.role !== 'candidate' || !this.opts.preVote) return false
    for (const granted of this.tracker.votes.values()) if (!granted) return true
    return false
  }

  step (m: Message): void {
    if (m.to !== this.id) return
    if (!this.senderAllowed(m)) { this.refusedMessages++; return }
    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        // Thesis §4.2.3: while a leader is known to be alive, ignore disruptive candidates (unless it is a transfer).
        const inLease = this.opts.checkQuorum && this.lead !== null && this.electionElapsed < this.opts.electionTicks
        if (!m.transfer && inLease) return
      }
      if (m.type === 'preVote') {
        // Never change our term in response to a pre-vote.
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // A granted pre-vote carries the future term; it is counted, not adopted.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from)
      } else {
        this.becomeFollower(m.term, null)
      }
    } else if (m.term < this.term) {
      if ((this.opts.checkQuorum || this.opts.preVote) && (m.type === 'app' || m.type === 'heartbeat')) {
        // A stale leader cut off by check-quorum/pre-vote would never learn the new term otherwise.
        this.send({ type: 'appResp', from: this.id, to: m.from, term: this.term, index: 0, reject: false, hintIndex: 0, hintTerm: 0 })
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResp', from: this.id, to: m.from, term: this.term, reject: true })
      }
      return
    }
    if (m.type === 'vote' || m.type === 'preVote') {
      const canVote = this.vote === m.from || (this.vote === '' && this.lead === null) || (m.type === 'preVote' && m.term > this.term)
      const respType = m.type === 'vote' ? 'voteResp' : 'preVoteResp'
      if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
        this.send({ type: respType, from: this.id, to: m.from, term: m.term, reject: false })
        if (m.type === 'vote') {
          this.electionElapsed = 0
          this.vote = m.from
        }
      } else {
        this.send({ type: respType, from: this.id, to: m.from, term: this.term, reject: true })
      }
      return
    }
    this.stepFn(this, m)
  }

  /**
   * Whether `m` may come from its sender: leader and candidate messages
   * (FROM_VOTERS) from voters, the rest from voters or learners. Two
   * exceptions keep a node whose configuration lags live, as it cannot tell
   * a new voter from a stranger: a node with no voters at all (a joiner
   * before its first append or snapshot), and a follower that has heard no
   * leader of its configuration for strangerTicks (the cluster may have
   * elected a voter it has not learnt of yet). A stranger can take a node
   * over only then; the real leader's heartbeats keep every node out of it.
   */
  senderAllowed (m: Message): boolean {
    const t = this.tracker
    if (FROM_VOTERS.has(m.type)) {
      if (t.voters.has(m.from)) {
        if (FROM_LEADER.has(m.type)) this.strangerElapsed = 0
        return true
      }
      return t.voters.size === 0 || (this.role !== 'leader' && this.strangerElapsed >= this.opts.strangerTicks)
    }
    return t.voters.has(m.from) || t.learners.has(m.from)
  }

  hup (transfer: boolean): void {
    if (this.role === 'leader' || !this.promotable()) return
    // A configuration change committed but not applied could change who votes; wait for it.
    const pending = this.log.nextCommittedEntries(Number.MAX_SAFE_INTEGER, this.log.applied)
    if (pending === null || pending.some(e => e.type === 'conf')) return
    if (this.opts.preVote && !transfer) this.runElection('pre', false)
    else this.runElection('real', transfer)
  }

  runElection (kind: 'pre' | 'real', transfer: boolean): void {
    if (kind === 'pre') this.becomePreCandidate()
    else this.becomeCandidate()
    const n = this.opts.campaignRetryTicks
    // Drawn only when enabled, so runs without it replay the same random sequence.
    this.campaignRetry = n > 0 ? n + Math.floor(this.opts.random() * n) : 0
    const term = kind === 'pre' ? this.term + 1 : this.term
    this.tracker.recordVote(this.id, true)
    if (this.tracker.tallyVotes() === 'won') {
      if (kind === 'pre') this.runElection('real', transfer)
      else this.becomeLeader()
      return
    }
    const index = this.log.lastIndex()
    const logTerm = this.log.lastTerm()
    for (const id of [...this.tracker.voters].sort()) {
      if (id === this.id) continue
      this.send({ type: kind === 'pre' ? 'preVote' : 'vote', from: this.id, to: id, term, index, logTerm, transfer })
    }
  }

  promotable (): boolean { return this.tracker.isVoter(this.id) }

  // ---- client API ---------------------------------------------------------

  propose (data: Uint8Array): { index: number, term: number } {
    this.checkCanPropose()
    const index = this.appendEntries([{ type: 'normal', term: 0, index: 0, data }])
    return { index, term: this.term }
  }

  proposeConfChange (change: ConfChange): { index: number, term: number } {
    this.checkCanPropose()
    if (this.pendingConfIndex > this.log.applied) {
      throw new ConfChangeError(`a configuration change is still pending (index ${this.pendingConfIndex}, applied ${this.log.applied}); retry once it is applied`)
    }
    const problem = confChangeProblem(this.tracker.confState(), change)
    if (problem !== null) throw new ConfChangeError(`invalid configuration change ${change.type} ${change.node}: ${problem}`)
    const index = this.appendEntries([{ type: 'conf', term: 0, index: 0, change }])
    this.pendingConfIndex = index
    return { index, term: this.term }
  }

  private checkCanPropose (): void {
    if (this.role !== 'leader') throw new NotLeaderError(this.lead)
    if (this.leadTransferee !== null) throw new ProposalDroppedError(`leadership is being transferred to ${this.leadTransferee}; retry on the new leader`)
  }

  // ---- internals shared by the role files --------------------------------

  send (m: Message): void {
    this.msgs.push(m)
  }

  /** Leader: assigns term and index, appends, acks itself and maybe commits. Returns the last index. */
  appendEntries (ents: Entry[]): number {
    let li = this.log.lastIndex()
    const stamped = ents.map(e => ({ ...e, term: this.term, index: ++li }))
    li = this.log.append(stamped)
    this.tracker.progress.get(this.id)?.maybeUpdate(li)
    this.maybeCommit()
    this.broadcastPending = true
    return li
  }

  /** Leader: advances the commit index to what a quorum has; true if it moved. */
  maybeCommit (): boolean {
    const moved = this.log.maybeCommit(this.tracker.committedIndex(), this.term)
    if (moved) this.releasePendingReads()
    return moved
  }

  committedInTerm (): boolean {
    return this.log.term(this.log.committed) === this.term
  }

  private releasePendingReads (): void {
    if (this.pendingReadIndex.length === 0 || !this.committedInTerm()) return
    const q = this.pendingReadIndex
    this.pendingReadIndex = []
    for (const r of q) stepLeader(this, { type: 'readIndex', from: r.from, to: this.id, term: this.term, context: r.context })
  }

  applyConfChange (e: Entry): void {
    if (e.type !== 'conf') return
    const cs = this.tracker.confState()
    // Invalid changes (checked again here, as every node applies the same sequence) are skipped.
    if (confChangeProblem(cs, e.change) !== null) return
    const next = applyConfChange(cs, e.change)
    this.tracker.setConfig(next, this.log.lastIndex() + 1)
    this.confHistory.push({ index: e.index, conf: next })
    if (this.role !== 'leader') return
    if (!this.tracker.isVoter(this.id)) {
      // A removed (or demoted) leader steps down; the rest elect a new one.
      this.becomeFollower(this.term, null)
      return
    }
    if (this.leadTransferee !== null && !this.tracker.isVoter(this.leadTransferee)) this.leadTransferee = null
    if (this.maybeCommit()) bcastAppend(this)
    else this.broadcastPending = true
  }

  hardState (): HardState { return { term: this.term, vote: this.vote, commit: this.log.committed } }
  softState (): SoftState { return { leader: this.lead, role: this.role } }

  /** Sends the appends that proposals since the last Ready asked for (one batch per follower). */
  flushBroadcast (): void {
    if (this.broadcastPending && this.role === 'leader') bcastAppend(this)
    this.broadcastPending = false
  }
}
