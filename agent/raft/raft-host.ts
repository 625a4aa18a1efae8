// The agent's Raft: durable storage in DATA/raft, the transport over libp2p,
// the cluster state machine, write forwarding to the leader, linearizable
// reads, and autopilot (autopilot.ts decides; the leader acts).
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { Stream, StreamHandler } from '@libp2p/interface'
import { NotLeaderError, RaftNode, RaftStoppedError, RaftStorage, wallClockTicker, type RaftNodeStatus } from '../../consensus/index.js'
import { ClusterState, type CommandInput, type CommandResult, type Command } from '../state/cluster-state.js'
import { admitCommand, CommandRefusedError } from '../state/commands.js'
import type { Config } from '../config.js'
import type { Logger } from '../logger.js'
import type { BoltLibp2p } from '../../p2p/node.js'
import { RAFT_PROTOCOL, RaftTransport } from './transport.js'
import { Autopilot } from './autopilot.js'
import { API_FORWARD_PROTOCOL, forwardHandler, forwardRequest, type ForwardResponse } from './forward.js'
import { RaftMetrics } from './raft-metrics.js'
import { CoarseDeadline } from './coarse-deadline.js'
import { WriteTimeline, messageIndex } from './timeline.js'

/** Fine ticks so that election timeouts spread over many distinct values (see ELECTION_JITTER). */
export const RAFT_TICK_MS = 20
/**
 * Election timeouts are drawn from [T, T + ELECTION_JITTER * T) for the
 * configured T (etcd: [T, 2T)). A kill -9 of the leader is then noticed
 * within 1.3 T instead of 2 T; pre-vote keeps ties rare: both survivors must
 * have their pre-votes cross in flight (a few ms in 300) to split a vote.
 */
export const ELECTION_JITTER = 0.3
export const AUTOPILOT_INTERVAL_MS = 1000
const AUTOPILOT_STEPS_PER_ROUND = 4
const WRITE_DEADLINE_MS = 10_000
/** Writes and reads started this close together share one deadline signal (see CoarseDeadline). */
const DEADLINE_SLOT_MS = 1000
/**
 * One forwarding attempt to the leader we believe in. Short, because right
 * after a leader dies its connection still looks open and a stream to it
 * just hangs; the next attempt asks Raft again who leads.
 */
const FORWARD_ATTEMPT_MS = 1000

export interface RaftMember {
  id: string
  state: 'alive' | 'suspect' | 'dead' | 'left'
  addrs: string[]
  labels: Record<string, string>
}

export interface RaftHostInit {
  self: string
  dataDir: string
  raft: Config['raft']
  bootstrap: boolean
  libp2p: BoltLibp2p
  openStream: (peerId: string, protocol: string, signal: AbortSignal) => Promise<Stream>
  guard: (h: StreamHandler) => StreamHandler
  members: () => RaftMember[]
  log: Logger
}

export class NoLeaderError extends Error {
  override name = 'NoLeaderError'
}

export class RaftHost {
  readonly state: ClusterState
  readonly metrics = new RaftMetrics()
  private storage!: RaftStorage
  node!: RaftNode
  private transport!: RaftTransport
  private autopilotTimer: NodeJS.Timeout | undefined
  private traceTimer: NodeJS.Timeout | undefined
  private autopilotBusy = false
  private readonly pilot = new Autopilot()
  private readonly ac = new AbortController()
  private readonly deadlines = new CoarseDeadline(WRITE_DEADLINE_MS, DEADLINE_SLOT_MS)
  /** BOLT_RAFT_TIMELINE=DIR: the write path's marks, written to DIR at stop (timeline.ts). */
  private readonly timeline = WriteTimeline.fromEnv()
  /** Request ids: random per process, then counted (unique across members and restarts; no random bytes per write). */
  private readonly reqPrefix = randomBytes(8).toString('hex')
  private reqSeq = 0
  /** Writes waiting on a leader change (one node listener for all of them: no listener-count warnings). */
  private readonly leaderWatchers = new Set<(c: { leader: string | null }) => void>()
  /** Forwarded commands refused at this node as leader (malformed, unknown, too large or not allowed). */
  refusedCommands = 0

  constructor (private readonly o: RaftHostInit) {
    // A committed entry that does not decode is skipped on every replica alike; say so, once per replay.
    this.state = new ClusterState({ onSkip: (index, err) => { o.log.error({ index, err: err.message, name: err.name }, 'raft: skipped a committed entry that is not a valid command') } })
  }

  async start (): Promise<void> {
    const o = this.o
    this.storage = await RaftStorage.open(join(o.dataDir, 'raft'), { onSynced: this.metrics.onSynced })
    this.transport = new RaftTransport({
      self: o.self,
      openStream: o.openStream,
      deliver: (m) => {
        if (TRACE && ELECTION_MSGS.has(m.type)) o.log.info({ m: trace(m) }, 'raft trace in')
        this.timeline?.mark(`in:${m.type}`, messageIndex(m))
        this.node.receive(m)
      },
      log: o.log
    })
    const electionTicks = Math.max(2, Math.round(o.raft.election_timeout_ms / RAFT_TICK_MS))
    const heartbeatTicks = Math.max(1, Math.round(o.raft.heartbeat_ms / RAFT_TICK_MS))
    this.node = new RaftNode({
      id: o.self,
      storage: this.storage,
      ...(o.bootstrap ? { bootstrap: [o.self] } : {}),
      tickMs: RAFT_TICK_MS,
      // A follower counts the time that passed, not late timer callbacks (see RaftNode's tick()).
      ticker: wallClockTicker,
      electionTicks,
      electionJitterTicks: Math.max(1, Math.round(ELECTION_JITTER * electionTicks)),
      // A campaign that did not win (a lease still counted, crossed pre-votes) starts again within 1-2 heartbeats.
      campaignRetryTicks: heartbeatTicks,
      heartbeatTicks,
      // Clients are learners: they never campaign, so one beat per election
      // timeout is enough for them (an idle 8-agent cluster with 3 voters
      // sent 140 Raft messages a second, 100 of them to and from learners).
      learnerHeartbeatTicks: Math.max(heartbeatTicks, electionTicks),
      // A new commit index rides on the next append, or goes out within a tick.
      deferCommitBroadcast: true,
      send: (to, m) => {
        if (TRACE && ELECTION_MSGS.has(m.type)) o.log.info({ m: trace(m) }, 'raft trace out')
        const tl = this.timeline
        if (tl === undefined) { this.transport.send(to, m); return }
        // 'handed': the transport's send returned (on an idle link it includes the stream's own write call).
        tl.mark(`out:${m.type}`, messageIndex(m))
        this.transport.send(to, m)
        tl.mark(`handed:${m.type}`, messageIndex(m))
      },
      ...(this.timeline === undefined ? {} : { trace: this.timeline.mark.bind(this.timeline) }),
      apply: (e) => { this.state.apply(e.index, e.data) },
      snapshot: async () => this.state.snapshot(),
      restore: (d) => { this.state.restore(d) }
    })
    this.node.on('leaderChange', (c) => {
      o.log.info({ leader: c.leader, term: c.term, role: c.role }, 'raft leader change')
      this.metrics.onLeaderChange(c)
      for (const w of [...this.leaderWatchers]) w(c)
    })
    this.node.on('fatal', (err) => { o.log.fatal({ err: err.message }, 'raft stopped on a storage error') })
    await o.libp2p.handle(RAFT_PROTOCOL, o.guard(this.transport.handler()), { maxInboundStreams: 16 })
    await o.libp2p.handle(API_FORWARD_PROTOCOL, o.guard(forwardHandler(async (req, from, signal) => await this.serveForward(req, from, signal))), { maxInboundStreams: 64 })
    await this.node.start()
    this.autopilotTimer = setInterval(() => { void this.autopilot() }, AUTOPILOT_INTERVAL_MS)
    this.autopilotTimer.unref()
    if (TRACE) {
      // Event-loop stalls, for raft-failover's slow-round timelines.
      let last = performance.now()
      this.traceTimer = setInterval(() => { const now = performance.now(); if (now - last > 80) o.log.info({ lagMs: Math.round(now - last - 20) }, 'raft trace loop lag'); last = now }, 20)
      this.traceTimer.unref()
    }
  }

  async stop (): Promise<void> {
    this.ac.abort()
    this.deadlines.stop(new RaftStoppedError('raft host stopped'))
    if (this.autopilotTimer !== undefined) clearInterval(this.autopilotTimer)
    if (this.traceTimer !== undefined) clearInterval(this.traceTimer)
    await this.o.libp2p.unhandle([RAFT_PROTOCOL, API_FORWARD_PROTOCOL]).catch(() => {}) // best-effort on stop: libp2p is stopping too
    await this.node?.stop().catch((err: Error) => { this.o.log.warn({ err: err.message }, 'raft node did not stop cleanly') })
    this.transport?.stop()
    await this.storage?.close().catch((err: Error) => { this.o.log.error({ err: err.message }, 'raft storage did not close cleanly') })
    await this.timeline?.dumpLogged(this.o.log)
  }

  status (): RaftNodeStatus { return this.node.status() }

  /** server when a voter, client otherwise (a learner, or not yet added). */
  roleOf (id: string): 'server' | 'client' {
    return this.node.status().voters.includes(id) ? 'server' : 'client'
  }

  bytes (): { in: number, out: number } { return this.transport.bytes }

  /** Refusals at the Raft boundary, for /metrics. */
  /** Commands and messages this node refused (see state/commands.ts and the core's voter check). */
  refusalMetrics (): Array<{ name: string, help: string, read: () => Array<{ value: number }> }> {
    return [
      { name: 'bolt_raft_refused_commands_total', help: 'Forwarded Raft commands this leader refused (malformed, unknown, too large, or not the sender\'s to issue)', read: () => [{ value: this.refusedCommands }] },
      { name: 'bolt_raft_refused_messages_total', help: 'Raft messages dropped because their sender is not a voter (or learner) of the configuration', read: () => [{ value: this.node.status().refusedMessages }] }
    ]
  }

  /** Commits a command through Raft from any member; resolves with its result once applied. */
  async write (input: CommandInput, signal?: AbortSignal): Promise<CommandResult> {
    const req = this.reqPrefix + (++this.reqSeq).toString(36)
    const cmd = { ...input, req } as Command
    const data = ClusterState.encode(cmd)
    // Fast path, on the leader: one proposal under the shared deadline. The
    // caller's signal is left out: leaving early would only stop the wait,
    // not the write. Anything but success goes the general way below.
    const deadline = this.deadlines.signal()
    this.timeline?.mark('write', 0)
    try {
      const at = await this.proposeTimed(data, deadline)
      this.timeline?.mark('written', at.index)
      return this.state.takeResult(req) ?? { ok: true }
    } catch (err) {
      if (deadline.aborted) throw new NoLeaderError(`could not commit within ${WRITE_DEADLINE_MS / 1000} s: ${(err as Error).message}`)
      if (!(err instanceof NotLeaderError) && (err as Error).name !== 'ProposalDroppedError') throw err
    }
    return await this.writeAnyMember(data, req, signal)
  }

  /** write() where this node is not (or no longer) the leader: forwards, retries, waits for a leader. */
  private async writeAnyMember (data: Uint8Array, req: string, signal?: AbortSignal): Promise<CommandResult> {
    const sig = AbortSignal.any([AbortSignal.timeout(WRITE_DEADLINE_MS), this.ac.signal, ...(signal !== undefined ? [signal] : [])])
    // Built only when needed: an Error's stack costs every write otherwise.
    let lastErr: Error | undefined
    for (let attempt = 0; !sig.aborted; attempt++) {
      try {
        await this.proposeTimed(data, sig)
        return this.state.takeResult(req) ?? { ok: true }
      } catch (err) {
        if (!(err instanceof NotLeaderError)) {
          if ((err as Error).name === 'ProposalDroppedError' && attempt < 20) { await sleep(100); continue }
          throw err
        }
        const leader = err.leader ?? this.node.status().leader
        if (leader === null || leader === this.o.self) { lastErr = err; await this.leaderChangeOr(100, sig); continue }
        // The attempt ends early when Raft learns of another leader: right
        // after a kill -9 the old leader's connection still looks open and a
        // stream to it hangs until FORWARD_ATTEMPT_MS, long after a new one won.
        const moved = new AbortController()
        const onChange = (c: { leader: string | null }): void => { if (c.leader !== leader) moved.abort(new NotLeaderError(c.leader, `raft: leadership moved from ${leader} to ${c.leader ?? 'nobody yet'}`)) }
        this.leaderWatchers.add(onChange)
        try {
          const attempt = AbortSignal.any([sig, moved.signal, AbortSignal.timeout(FORWARD_ATTEMPT_MS)])
          const stream = await this.o.openStream(leader, API_FORWARD_PROTOCOL, attempt)
          this.metrics.forwarded.sent++
          const res: ForwardResponse = await forwardRequest(stream, { op: 'propose', data, req }, attempt)
          if (res.ok) {
            // Read-your-writes here too: wait until this node has applied up to the leader's commit.
            await this.node.readIndex(sig).catch((err: Error) => { this.o.log.debug({ err: err.message }, 'forwarded write committed; this copy may lag it (no ReadIndex)') })
            return res.result as CommandResult
          }
          lastErr = Object.assign(new Error(res.error), { name: res.name })
          if (res.name !== 'NotLeaderError' && res.name !== 'ProposalDroppedError') throw lastErr
        } catch (ferr) {
          lastErr = moved.signal.aborted ? moved.signal.reason as Error : ferr as Error
          if (lastErr.name !== 'NotLeaderError' && lastErr.name !== 'ProposalDroppedError' && !isNetError(lastErr)) throw lastErr
        } finally {
          this.leaderWatchers.delete(onChange)
        }
        if (!moved.signal.aborted) await this.leaderChangeOr(Math.min(100 * (attempt + 1), 500), sig)
      }
    }
    throw new NoLeaderError(`could not commit within ${WRITE_DEADLINE_MS / 1000} s: ${lastErr?.message ?? 'no Raft leader is known (is a quorum of servers up?)'}`)
  }

  /** Waits `ms`, or less if Raft's leader changes first (a retry then goes straight to the new one). */
  private async leaderChangeOr (ms: number, signal: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      const done = (): void => {
        clearTimeout(timer)
        this.leaderWatchers.delete(done)
        signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.leaderWatchers.add(done)
      signal.addEventListener('abort', done, { once: true })
    })
  }

  /** A linearizable read of one key (ReadIndex through the leader, then the local state). */
  async read (key: string, signal?: AbortSignal): Promise<string | undefined> {
    // Fast path, as for writes: one ReadIndex round under the shared deadline.
    const deadline = this.deadlines.signal()
    try {
      await this.node.readIndex(deadline)
      return this.state.get(key)
    } catch (err) {
      if (deadline.aborted) throw new NoLeaderError(`read not confirmed within ${WRITE_DEADLINE_MS / 1000} s: ${(err as Error).message}`)
    }
    const sig = AbortSignal.any([AbortSignal.timeout(WRITE_DEADLINE_MS), this.ac.signal, ...(signal !== undefined ? [signal] : [])])
    let lastErr: Error | undefined
    while (!sig.aborted) {
      try {
        await this.node.readIndex(sig)
        return this.state.get(key)
      } catch (err) {
        lastErr = err as Error
        if (sig.aborted) break
        await sleep(100)
      }
    }
    throw new NoLeaderError(`read not confirmed within ${WRITE_DEADLINE_MS / 1000} s: ${lastErr?.message ?? 'no Raft leader is known'}`)
  }

  /**
   * A member's forwarded write. The leader checks it before proposing: the
   * bytes must decode to a registered command within its size bound, and
   * the sender (the peer id the connection authenticated) must be allowed
   * to issue it (the rule table in state/commands.ts).
   */
  private async serveForward (req: { op: 'propose', data: Uint8Array, req: string } | { op: 'join' }, from: string, signal: AbortSignal): Promise<ForwardResponse> {
    if (req.op !== 'propose') return { ok: true }
    const st = this.node.status()
    if (st.role !== 'leader') throw new NotLeaderError(st.leader)
    let cmd: Command
    try {
      cmd = admitCommand(req.data, { from, leader: this.o.self, state: this.state })
      if (cmd.req !== req.req) throw new CommandRefusedError(`the leader refused a command from ${from}: its request id does not match the forwarded one`)
    } catch (err) {
      this.refusedCommands++
      this.o.log.warn({ from, err: (err as Error).message, name: (err as Error).name }, 'raft: refused a forwarded command')
      throw err
    }
    this.metrics.forwarded.served++
    await this.proposeTimed(req.data, signal)
    return { ok: true, result: this.state.takeResult(req.req) ?? { ok: true } }
  }

  /** propose(), its time to commit and apply observed for /metrics when it succeeds. */
  private async proposeTimed (data: Uint8Array, signal: AbortSignal): Promise<{ index: number, term: number }> {
    const t0 = performance.now()
    const at = await this.node.propose(data, signal)
    this.metrics.commitSeconds.observe((performance.now() - t0) / 1000)
    return at
  }

  /** Leaves Raft cleanly: a leader first hands leadership to a caught-up voter. */
  async prepareLeave (): Promise<void> {
    const st = this.node.status()
    if (st.role !== 'leader') return
    const target = st.voters.filter(v => v !== this.o.self).sort((a, b) => (st.progress[b]?.match ?? 0) - (st.progress[a]?.match ?? 0))[0]
    if (target === undefined) return
    try {
      await this.node.transferLeadership(target, AbortSignal.timeout(3000))
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'leadership transfer before leave failed')
    }
  }

  /**
   * One autopilot round. After a change that committed, the next step is
   * taken at once (a joiner becomes a voter within a round or two instead of
   * one step per second), up to a few steps a round.
   */
  private async autopilot (): Promise<void> {
    if (this.autopilotBusy) return
    this.autopilotBusy = true
    try {
      for (let i = 0; i < AUTOPILOT_STEPS_PER_ROUND && !this.ac.signal.aborted; i++) {
        const st = this.node.status()
        const match: Record<string, number> = {}
        for (const [id, p] of Object.entries(st.progress)) match[id] = p.match
        const step = this.pilot.step({
          self: this.o.self,
          members: this.o.members(),
          voters: st.voters,
          learners: st.learners,
          match,
          lastIndex: st.lastIndex,
          wantVoters: this.o.raft.voters,
          deadVoterGraceMs: this.o.raft.dead_voter_grace_ms,
          now: Date.now()
        })
        if (st.role !== 'leader' || step === undefined) return
        const signal = AbortSignal.any([AbortSignal.timeout(5000), this.ac.signal])
        switch (step.kind) {
          case 'remove':
            this.o.log.info({ id: step.id, state: step.state }, 'autopilot: removing server')
            await this.node.removeServer(step.id, signal)
            break
          case 'addLearner':
            this.o.log.info({ id: step.id }, 'autopilot: adding learner')
            await this.node.addLearner(step.id, signal)
            break
          case 'promote':
            this.o.log.info({ id: step.id }, 'autopilot: promoting learner to voter')
            await this.node.promote(step.id, signal)
            break
        }
      }
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'autopilot round failed; retrying next round')
    } finally {
      this.autopilotBusy = false
    }
  }
}

/** BOLT_RAFT_TRACE=1: election messages and event-loop stalls at info level (a diagnostic; see docs/performance.md). */
const TRACE = process.env.BOLT_RAFT_TRACE === '1'
const ELECTION_MSGS = new Set(['preVote', 'preVoteResp', 'vote', 'voteResp', 'timeoutNow'])
function trace (m: { type: string, from: string, to: string, term: number, reject?: boolean }): string { return `${m.type} ${m.from.slice(-6)}->${m.to.slice(-6)} t${m.term}${m.reject === true ? ' REJ' : ''}` }

function sleep (ms: number): Promise<void> { return new Promise(resolve => setTimeout(resolve, ms)) }

function isNetError (e: Error): boolean {
  return ['PeerUnreachableError', 'AbortError', 'TimeoutError', 'StreamResetError', 'UnexpectedEOFError', 'NotAdmittedError', 'StreamStateError', 'DialError', 'NoValidAddressesError'].includes(e.name)
}
