// A tick-driven SWIM core with Lifeguard (after hashicorp/memberlist), free
// of I/O: `tick()` and `receive()` in, `drain()` out (messages to send and
// member events). No timers, sockets, clock or Math.random inside, so N cores
// run under a seeded simulator and replay exactly.
import { MAX_MESSAGE_BYTES, encodedSize } from '../codec.js'
import type { MemberMeta } from '../meta.js'
import type { LeftVerifier } from '../left-proof.js'
import { MAX_GOSSIP_ITEMS, type Gossip, type SwimMessage } from '../messages.js'
import { checkConfig, ticksOf, type SwimConfig } from '../profiles.js'
import { Awareness } from './awareness.js'
import { BroadcastQueue, retransmitLimit } from './broadcast-queue.js'
import { MemberTable, type MemberRecord } from './member-table.js'
import { ProbeOrder } from './probe-order.js'
import { ENVELOPE_HEADROOM, ITEM_OVERHEAD, chunkStates, mergeStates, stateOf } from './push-pull.js'
import { pickRandom, randomInt, type Random } from './random.js'
import type { Drained, MemberEvent, MemberView, Outgoing, SwimCounters } from './types.js'

export interface SwimCoreOptions {
  /** This node's id (its libp2p peer id). */
  self: string
  meta: MemberMeta
  /**
   * The last incarnation this id announced in a previous life (persisted by
   * the caller; 0 for a new node). The core starts one above it, so a node
   * restarted after kill -9 is news to everyone that saw it die.
   */
  lastIncarnation?: number
  config: SwimConfig
  /** Seeded random source in [0, 1). */
  random: Random
  /**
   * Checks a member's signature of its own `left` news (left-proof.ts's
   * verifyLeft over libp2p; simulators pass their own).
   */
  verifyLeft: LeftVerifier
}

/** Bound on outstanding indirect probes this node relays for others. */
const MAX_RELAYS = 1024
/** Push-pull attempts per seed before a join through it is given up. */
export const JOIN_ATTEMPTS = 5

/**
 * How long after joining the core retries a silent seed: attempts at
 * 1, 2, 4, 8 … probe intervals (exponential back-off, so a seed busy with
 * many joiners is not hammered), JOIN_ATTEMPTS in all.
 */
export function joinWindowMs (probeIntervalMs: number): number {
  return (2 ** JOIN_ATTEMPTS - 1) * probeIntervalMs
}

interface Probe {
  target: string
  seq: number
  indirectAt: number
  deadline: number
  indirectSent: boolean
  expectedNacks: number
  nacks: number
}

interface Relay {
  origin: string
  originSeq: number
  nackAt: number
  expireAt: number
  nacked: boolean
}

interface Ticks {
  probeInterval: number
  probeTimeout: number
  nack: number
  gossip: number
  gossipToTheDead: number
  pushPull: number
  reclaim: number
  tombstone: number
}

export class SwimCore {
  readonly self: string
  private readonly config: Readonly<SwimConfig>
  private readonly ticks: Ticks
  private readonly random: Random
  private now = 0
  private seq = 0
  private readonly table: MemberTable
  private readonly queue: BroadcastQueue
  private readonly awareness: Awareness
  private readonly seedAddrs = new Map<string, string[]>()
  /** Last tick we asked a "dead" member that talked to us for its state. */
  private readonly deadTalkSync = new Map<string, number>()
  /** Seeds whose push-pull has not been answered yet: retried every probe interval. */
  private readonly pendingSeeds = new Map<string, { nextTry: number, attempt: number }>()
  private readonly probeOrder: ProbeOrder
  private probe: Probe | null = null
  private readonly relays = new Map<number, Relay>()
  private nextProbeTick: number
  private nextGossipTick: number
  private nextPushPullTick: number
  private out: Outgoing[] = []
  private events: MemberEvent[] = []
  private readonly counters: SwimCounters = {
    probesSent: 0, probesFailed: 0, indirectProbesSent: 0, suspicionsRaised: 0, suspicionsRefuted: 0, selfRefutations: 0, messagesIn: 0, messagesOut: 0
  }

  constructor (opts: SwimCoreOptions) {
    this.self = opts.self
    this.config = checkConfig(opts.config)
    this.random = opts.random
    const c = this.config
    const t = (ms: number): number => ticksOf(ms, c.tickMs)
    this.ticks = {
      probeInterval: t(c.probeIntervalMs),
      probeTimeout: t(c.probeTimeoutMs),
      // A relay nacks halfway through the requester's indirect window
      // (interval − timeout), so the nack arrives before the requester's
      // deadline; memberlist nacks after a full probe timeout, which races it.
      nack: Math.max(1, Math.floor((t(c.probeIntervalMs) - t(c.probeTimeoutMs)) / 2)),
      gossip: t(c.gossipIntervalMs),
      gossipToTheDead: t(c.gossipToTheDeadMs),
      pushPull: c.pushPullIntervalMs > 0 ? t(c.pushPullIntervalMs) : 0,
      reclaim: t(c.reclaimMs),
      tombstone: t(c.tombstoneMs)
    }
    this.awareness = new Awareness(c.awarenessMaxMultiplier)
    this.probeOrder = new ProbeOrder(this.random)
    this.queue = new BroadcastQueue(c.maxBroadcasts)
    const me: MemberRecord = { id: opts.self, state: 'alive', incarnation: (opts.lastIncarnation ?? 0) + 1, meta: opts.meta, stateChangedAtTick: 0 }
    this.table = new MemberTable(me, this.config, this.awareness, this.counters, {
      broadcast: g => { this.broadcast(g) },
      event: (kind, rec) => { this.events.push({ kind, member: this.table.view(rec), tick: this.now }) },
      added: id => { this.probeOrder.insert(id) }
    }, () => this.now, opts.verifyLeft)
    this.broadcast({ k: 'alive', id: me.id, inc: me.incarnation, meta: me.meta })
    // Random phases, so that nodes started together do not probe in lockstep.
    this.nextProbeTick = 1 + randomInt(this.random, this.ticks.probeInterval)
    this.nextGossipTick = 1 + randomInt(this.random, this.ticks.gossip)
    this.nextPushPullTick = this.ticks.pushPull > 0 ? 1 + randomInt(this.random, this.ticks.pushPull) + this.ticks.pushPull : Number.POSITIVE_INFINITY
  }

  // ---- inputs ----------------------------------------------------------

  /** Advances logical time by one tick (`config.tickMs`). */
  tick (): void {
    this.now++
    this.tickRelays()
    this.tickJoin()
    this.table.checkSuspicions()
    const p = this.probe
    if (p !== null && this.now >= p.deadline) this.probeFailed(p)
    else if (p !== null && !p.indirectSent && this.now >= p.indirectAt) this.probeIndirect(p)
    if (!this.table.leaving && this.now >= this.nextProbeTick) {
      this.table.reap(this.ticks.reclaim, this.ticks.tombstone)
      this.startProbe()
      // Lifeguard: an unhealthy node stretches its probe interval.
      this.nextProbeTick = this.now + this.awareness.scale(this.ticks.probeInterval)
    }
    if (this.now >= this.nextGossipTick) {
      this.gossipRound()
      this.nextGossipTick = this.now + this.ticks.gossip
    }
    if (!this.table.leaving && this.now >= this.nextPushPullTick) {
      this.pushPullRound()
      this.nextPushPullTick = this.now + pushPullScale(this.ticks.pushPull, this.table.liveCount())
    }
  }

  /** Handles a message from `from` (the authenticated sender id). */
  receive (from: string, msg: SwimMessage): void {
    if (from === this.self) return
    this.counters.messagesIn++
    if (msg.t === 'push-pull') {
      this.pendingSeeds.delete(from)
      mergeStates(this.table, from, msg.states)
      if (msg.reply && !this.table.leaving) this.sendPushPull(from, false, false)
      return
    }
    // Piggybacked news first: a suspicion about us (the buddy system) is
    // refuted before we answer, so the refutation rides on the ack.
    for (const g of msg.g) this.table.apply(g)
    this.syncIfDead(from)
    switch (msg.t) {
      case 'ping':
        if (msg.target === this.self) this.send(from, { t: 'ack', seq: msg.seq, g: [] })
        break
      case 'ack': this.onAck(msg.seq); break
      case 'nack':
        if (this.probe?.seq === msg.seq) this.probe.nacks++
        break
      case 'ping-req': this.onPingReq(from, msg.seq, msg.target, msg.addrs); break
      case 'gossip': break
    }
  }

  /** Joins through seeds: a push-pull state exchange with each. */
  join (seeds: Array<{ id: string, addrs: string[] }>): void {
    for (const seed of seeds) {
      if (seed.id === this.self) continue
      this.seedAddrs.set(seed.id, [...seed.addrs])
      this.pendingSeeds.set(seed.id, { nextTry: this.now + this.ticks.probeInterval, attempt: 1 })
      this.sendPushPull(seed.id, true, true)
    }
  }

  /** True once this node knows at least one other live member. */
  joined (): boolean {
    for (const m of this.table.members.values()) if (m.id !== this.self && (m.state === 'alive' || m.state === 'suspect')) return true
    return false
  }

  /** True while some seed may still answer a join. */
  joinPending (): boolean { return this.pendingSeeds.size > 0 }

  /**
   * Leaves gracefully: announces `left` at a higher incarnation (so no stale
   * alive can outrank it) and pushes it to a few members at once; probing
   * and anti-entropy stop, gossip continues until the caller stops ticking.
   * `sign` gives this node's signature of its departure at the incarnation it
   * is passed (left-proof.ts); without one, nobody takes the news as a leave.
   */
  leave (sign: (inc: number) => string | undefined = () => undefined): void {
    if (this.table.leaving) return
    const me = this.table.me
    this.table.leaving = true
    this.probe = null
    me.incarnation++
    me.state = 'left'
    me.stateChangedAtTick = this.now
    const sig = sign(me.incarnation)
    if (sig !== undefined) me.leftSig = sig
    this.broadcast({ k: 'left', id: me.id, inc: me.incarnation, ...(sig !== undefined ? { sig } : {}) })
    this.events.push({ kind: 'left', member: this.table.view(me), tick: this.now })
    for (const id of this.gossipTargets(Math.max(this.config.gossipNodes, this.config.indirectChecks))) {
      this.send(id, { t: 'gossip', g: [] })
    }
  }

  /** Announces new metadata at a new incarnation. */
  updateMeta (meta: MemberMeta): void {
    const me = this.table.me
    if (this.table.leaving) return
    me.incarnation++
    me.meta = meta
    this.broadcast({ k: 'alive', id: me.id, inc: me.incarnation, meta })
    this.events.push({ kind: 'updated', member: this.table.view(me), tick: this.now })
  }

  // ---- outputs ---------------------------------------------------------

  drain (): Drained {
    const d = { send: this.out, events: this.events }
    this.out = []
    this.events = []
    return d
  }

  members (): MemberView[] {
    return [...this.table.members.values()].map(r => this.table.view(r))
  }

  member (id: string): MemberView | undefined {
    const r = this.table.members.get(id)
    return r === undefined ? undefined : this.table.view(r)
  }

  incarnation (): number { return this.table.me.incarnation }
  healthScore (): number { return this.awareness.getHealthScore() }
  currentTick (): number { return this.now }
  stats (): SwimCounters { return { ...this.counters } }
  broadcastsQueued (): number { return this.queue.length }

  /** Known addresses of a member (its metadata's, else a seed's). */
  addrsOf (id: string): string[] {
    const rec = this.table.members.get(id)
    if (rec !== undefined && rec.meta.addrs.length > 0) return [...rec.meta.addrs]
    return [...(this.seedAddrs.get(id) ?? [])]
  }

  // ---- probing ---------------------------------------------------------

  private nextProbeTarget (): string | null {
    return this.probeOrder.next(() => this.table.members.keys(), id => {
      const s = this.table.members.get(id)?.state
      return id !== this.self && (s === 'alive' || s === 'suspect')
    })
  }

  private startProbe (): void {
    const target = this.nextProbeTarget()
    if (target === null) return
    const rec = this.table.members.get(target) as MemberRecord
    const seq = ++this.seq
    // Buddy system (Lifeguard): tell a suspect it is suspected, so it can refute at once.
    const buddy: Gossip[] = rec.state === 'suspect' ? [{ k: 'suspect', id: target, inc: rec.incarnation, from: this.self }] : []
    this.probe = {
      target,
      seq,
      indirectAt: this.now + this.ticks.probeTimeout,
      deadline: this.now + this.awareness.scale(this.ticks.probeInterval),
      indirectSent: false,
      expectedNacks: 0,
      nacks: 0
    }
    this.counters.probesSent++
    this.send(target, { t: 'ping', seq, target, g: buddy })
  }

  private probeIndirect (p: Probe): void {
    p.indirectSent = true
    const relays = pickRandom(this.random, [...this.table.members.values()], this.config.indirectChecks,
      m => m.id !== this.self && m.id !== p.target && m.state === 'alive')
    const addrs = this.addrsOf(p.target)
    for (const r of relays) {
      this.counters.indirectProbesSent++
      this.send(r.id, { t: 'ping-req', seq: p.seq, target: p.target, addrs, g: [] })
    }
    p.expectedNacks = relays.length
  }

  private probeFailed (p: Probe): void {
    this.probe = null
    this.counters.probesFailed++
    // Lifeguard: relays that did not even nack suggest that we are the one
    // with trouble; with no relays, any failed probe counts against us.
    this.awareness.applyDelta(p.expectedNacks > 0 ? Math.max(0, p.expectedNacks - p.nacks) : 1)
    const rec = this.table.members.get(p.target)
    if (rec === undefined || (rec.state !== 'alive' && rec.state !== 'suspect')) return
    if (rec.state === 'alive') this.counters.suspicionsRaised++
    this.table.onSuspect(p.target, rec.incarnation, this.self)
  }

  private onAck (seq: number): void {
    const p = this.probe
    if (p !== null && p.seq === seq) {
      this.probe = null
      this.awareness.applyDelta(-1)
      return
    }
    const relay = this.relays.get(seq)
    if (relay !== undefined) {
      this.relays.delete(seq)
      this.send(relay.origin, { t: 'ack', seq: relay.originSeq, g: [] })
    }
  }

  private onPingReq (from: string, originSeq: number, target: string, addrs: string[]): void {
    if (target === this.self || this.relays.size >= MAX_RELAYS) return
    const seq = ++this.seq
    this.relays.set(seq, { origin: from, originSeq, nackAt: this.now + this.ticks.nack, expireAt: this.now + this.ticks.probeInterval, nacked: false })
    const known = this.addrsOf(target)
    this.sendWithAddrs(target, known.length > 0 ? known : addrs, { t: 'ping', seq, target, g: [] })
  }

  /**
   * A member we hold dead is talking to us: its refutation has not reached
   * us (dissemination is probabilistic, and small clusters retransmit
   * little). Rather than wait for anti-entropy, ask it for its state — at
   * most once per five probe intervals per member. (Not in memberlist.)
   */
  private syncIfDead (from: string): void {
    if (this.table.members.get(from)?.state !== 'dead' || this.table.leaving) return
    const last = this.deadTalkSync.get(from)
    if (last !== undefined && this.now - last < 5 * this.ticks.probeInterval) return
    if (this.deadTalkSync.size >= MAX_RELAYS) this.deadTalkSync.clear()
    this.deadTalkSync.set(from, this.now)
    this.sendPushPull(from, false, true)
  }

  /** Join retries: a lost push-pull must not leave a joiner alone forever. */
  private tickJoin (): void {
    if (this.pendingSeeds.size === 0) return
    if (this.joined()) { this.pendingSeeds.clear(); return }
    for (const [id, p] of this.pendingSeeds) {
      if (this.now < p.nextTry) continue
      if (p.attempt >= JOIN_ATTEMPTS) { this.pendingSeeds.delete(id); continue }
      p.nextTry = this.now + this.ticks.probeInterval * 2 ** p.attempt
      p.attempt++
      this.sendPushPull(id, true, true)
    }
  }

  private tickRelays (): void {
    for (const [seq, r] of this.relays) {
      if (this.now >= r.expireAt) { this.relays.delete(seq); continue }
      if (!r.nacked && this.now >= r.nackAt) {
        r.nacked = true
        this.send(r.origin, { t: 'nack', seq: r.originSeq, g: [] })
      }
    }
  }

  // ---- dissemination ---------------------------------------------------

  private gossipTargets (k: number): string[] {
    const now = this.now
    return pickRandom(this.random, [...this.table.members.values()], k, m => m.id !== this.self &&
      (m.state === 'alive' || m.state === 'suspect' || (m.state === 'dead' && now - m.stateChangedAtTick < this.ticks.gossipToTheDead)))
      .map(m => m.id)
  }

  private gossipRound (): void {
    if (this.queue.length === 0) return
    for (const id of this.gossipTargets(this.config.gossipNodes)) {
      if (this.queue.length === 0) break
      this.send(id, { t: 'gossip', g: [] })
    }
  }

  private pushPullRound (): void {
    const [target] = pickRandom(this.random, [...this.table.members.values()], 1, m => m.id !== this.self && m.state === 'alive')
    if (target !== undefined) this.sendPushPull(target.id, false, true)
  }

  /** Our full state (members and tombstones), in as many messages as the size bound needs; only the first asks for a reply. */
  private sendPushPull (to: string, join: boolean, reply: boolean): void {
    chunkStates(stateOf(this.table)).forEach((states, i) => {
      this.sendWithAddrs(to, this.addrsOf(to), { t: 'push-pull', join, reply: reply && i === 0, states })
    })
  }

  // ---- sending ---------------------------------------------------------

  private broadcast (g: Gossip): void {
    this.queue.push(g, encodedSize(g))
  }

  private send (to: string, msg: SwimMessage): void {
    this.sendWithAddrs(to, this.addrsOf(to), msg)
  }

  /** Queues a message, filling its spare room with piggybacked broadcasts. */
  private sendWithAddrs (to: string, addrs: string[], msg: SwimMessage): void {
    if (msg.t !== 'push-pull') {
      const budget = MAX_MESSAGE_BYTES - ENVELOPE_HEADROOM - encodedSize(msg)
      const limit = retransmitLimit(this.config.retransmitMult, this.table.liveCount())
      const extra = this.queue.take(budget, ITEM_OVERHEAD, limit, MAX_GOSSIP_ITEMS - msg.g.length)
      if (extra.length > 0) msg = { ...msg, g: [...msg.g, ...extra] }
    }
    this.counters.messagesOut++
    this.out.push({ to, addrs, msg })
  }
}

/** memberlist pushPullScale: above 32 members, anti-entropy slows by ceil(log2(N) − log2(32)) + 1. */
export function pushPullScale (intervalTicks: number, n: number): number {
  if (n <= 32) return intervalTicks
  return intervalTicks * (Math.ceil(Math.log2(n) - Math.log2(32)) + 1)
}
