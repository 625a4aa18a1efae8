// The decision core of a piece-wise pull, with no I/O and no timers: events
// in (a peer's have-bitfield, a piece arrived or failed, a peer gone), the
// current time in milliseconds passed to `tick(now)`, and actions out (ask a
// peer for a piece, fetch a piece from the registry, query a peer's
// bitfield, ban a peer, done). The same deterministic harness style as Raft
// and SWIM drives it in tests.
//
// Policy: rarest piece first among those a peer has, at most
// `maxInflightPerPeer` requests pipelined per peer, endgame duplicates once
// every missing piece is requested — only for a request that has been out
// for longer than pieces usually take, so a blob of few pieces pulled from
// many peers does not fetch every piece twice. The registry gets a piece only when no
// live peer has it, and then only if it is this node's share among the
// nodes pulling the same blob right now (index mod k = rank), or when it
// has waited `registryDeadlineMs` for a peer to get it, and never while a
// peer that is making progress claims that piece for the registry itself
// (the lowest peer id wins a double claim; a request already under way
// always wins) — so parallel first pulls split the registry egress instead
// of each taking it all.
import { Bitfield } from './bitfield.js'
import {
  COVER_FACTOR, ENDGAME_SLOW_FACTOR, IDLE_QUERY_FACTOR, MAX_QUERY_BACKOFF, MAX_REGISTRY_FAILURES, REGISTRY_RETRY_MS,
  withPickerDefaults, type PickerAction, type PickerConfig, type Source
} from './piece-picker-config.js'

import { PickerInvariantError, TickBudget, tieOrder } from './piece-picker-parts.js'

export * from './piece-picker-config.js'
export { PickerInvariantError } from './piece-picker-parts.js'

/** Weight of the newest piece time in the running average (exponential). */
const PIECE_TIME_WEIGHT = 0.2

interface PeerState {
  have: Bitfield | null
  /** Pieces the peer fetches or will fetch from the registry (its claims). */
  fetching: Bitfield | null
  /** Of those, the ones whose registry request is under way: never fetched here too. */
  registryNow: Bitfield | null
  /** When its bitfield last grew (or it first answered): claims of a peer stuck longer are not believed. */
  lastChange: number
  /** Answers in a row that brought nothing new: the next query waits longer (bounded back-off). */
  unchanged: number
  pulling: boolean
  inflight: Map<number, number>
  queryInflight: boolean
  lastQuery: number
  /** When the query its last answer replied to went out: the answer shows the peer as of then or later. */
  answeredAt: number
  /** When bytes of an answer last came from it: a peer sending slowly is busy, not gone. */
  lastBytes: number
}

export class PiecePicker {
  private readonly cfg: Required<PickerConfig>
  readonly have: Bitfield
  private readonly peers = new Map<string, PeerState>()
  private readonly banned = new Set<string>()
  /** index → sources it is in flight from. */
  private readonly inflight = new Map<number, Set<Source>>()
  private readonly waitSince = new Map<number, number>()
  private claimed: Bitfield
  /** When this node started claiming each piece it claims now. */
  private readonly claimedSince = new Map<number, number>()
  private lastNow: number
  private readonly order: number[]
  /** index → when its registry request started (its size: registry requests in flight). */
  private readonly registrySince = new Map<number, number>()
  /** Running average of how long a piece from a peer takes (ms); undefined before the first. */
  private pieceMs: number | undefined
  private registryFailures = 0
  private registryRetryAt = 0
  private readonly startedAt: number
  private lastProgress: number
  private finished = false
  readonly fromRegistry = new Set<number>()

  constructor (cfg: PickerConfig, have: Bitfield, now: number) {
    this.cfg = withPickerDefaults(cfg)
    if (have.length !== cfg.pieceCount) throw new RangeError(`have-bitfield has ${have.length} bits for ${cfg.pieceCount} pieces`)
    this.have = have.clone()
    this.startedAt = now
    this.lastProgress = now
    this.lastNow = now
    this.claimed = new Bitfield(cfg.pieceCount)
    this.order = tieOrder(cfg.self, cfg.pieceCount)
  }

  get done (): boolean { return this.have.count() === this.cfg.pieceCount }

  isBanned (peer: string): boolean { return this.banned.has(peer) }
  bannedPeers (): string[] { return [...this.banned] }
  livePeers (): string[] { return [...this.peers.keys()] }

  /** Whether `peer` holds, or is pulling, a piece this node is missing. */
  peerOffers (peer: string): boolean {
    const p = this.peers.get(peer)
    if (p === undefined || p.have === null) return false
    return p.pulling || this.peerHasMissing(p.have)
  }

  addPeer (peer: string): void {
    if (peer === this.cfg.self || this.banned.has(peer) || this.peers.has(peer)) return
    this.peers.set(peer, { have: null, fetching: null, registryNow: null, lastChange: this.lastNow, unchanged: 0, pulling: false, inflight: new Map(), queryInflight: false, lastQuery: -Infinity, answeredAt: -Infinity, lastBytes: -Infinity })
  }

  /**
   * A bitfield answer (or `null` when the peer holds nothing of this blob),
   * with the pieces it claims for the registry (`fetching`) and, of those,
   * the ones it is fetching right now (`registryNow`).
   */
  peerHave (peer: string, have: Bitfield | null, pulling: boolean, fetching?: Bitfield, registryNow?: Bitfield): void {
    const p = this.peers.get(peer)
    if (p === undefined) return
    p.answeredAt = p.queryInflight ? p.lastQuery : this.lastNow
    p.queryInflight = false
    const sized = (b: Bitfield | null | undefined): Bitfield | null => b != null && b.length === this.cfg.pieceCount ? b : null
    const before = p.have?.count() ?? -1
    p.have = sized(have) ?? new Bitfield(this.cfg.pieceCount)
    const claimed = sized(fetching)
    if (p.have.count() > before) {
      p.lastChange = this.lastNow
      p.unchanged = 0
    } else if ((claimed?.count() ?? 0) !== (p.fetching?.count() ?? 0)) {
      // New claims matter as much as new pieces: ask again soon.
      p.unchanged = 0
    } else {
      p.unchanged = Math.min(p.unchanged + 1, 16)
    }
    p.pulling = pulling
    p.fetching = claimed
    p.registryNow = sized(registryNow)
  }

  /**
   * Pieces this node fetches or will fetch from the registry (in flight, or
   * its share not yet started), told to peers so they do not fetch them too.
   */
  registryFetching (): Bitfield {
    const b = this.claimed.clone()
    for (const [i, s] of this.inflight) if (s.has('registry')) b.set(i)
    return b
  }

  /** Pieces whose registry request is under way now. */
  registryInFlight (): Bitfield {
    const b = new Bitfield(this.cfg.pieceCount)
    for (const i of this.registrySince.keys()) b.set(i)
    return b
  }

  /**
   * Live peers that claim piece `index` for the registry and made progress
   * lately; `underWay`: one of them has its request out already.
   */
  private claimers (index: number, now: number): { ids: string[], underWay: boolean } {
    const ids: string[] = []
    let underWay = false
    for (const [id, p] of this.peers) {
      if (p.fetching?.get(index) !== true || now - p.lastChange >= this.cfg.registryDeadlineMs * COVER_FACTOR) continue
      ids.push(id)
      if (p.registryNow?.get(index) === true) underWay = true
    }
    return { ids, underWay }
  }

  /** Bytes of an answer arrived from `peer`: its requests stay alive (see expireRequests). */
  peerProgress (peer: string, now: number): void {
    const p = this.peers.get(peer)
    if (p !== undefined) p.lastBytes = now
  }

  queryFailed (peer: string): void {
    this.peerGone(peer)
  }

  /** The peer left, died, or its stream broke: everything in flight to it is free again. */
  peerGone (peer: string): void {
    const p = this.peers.get(peer)
    if (p === undefined) return
    for (const index of p.inflight.keys()) this.inflight.get(index)?.delete(peer)
    this.peers.delete(peer)
  }

  /** A piece arrived; `ok` is whether it matched its hash. */
  received (source: Source, index: number, ok: boolean, now: number): PickerAction[] {
    if (ok && source !== 'registry') {
      const started = this.peers.get(source)?.inflight.get(index)
      if (started !== undefined) {
        const ms = now - started
        this.pieceMs = this.pieceMs === undefined ? ms : this.pieceMs + PIECE_TIME_WEIGHT * (ms - this.pieceMs)
      }
    }
    this.clearInflight(source, index)
    if (source === 'registry') {
      if (ok) { this.registryFailures = 0 } else { this.registryFailures++; this.registryRetryAt = now + REGISTRY_RETRY_MS }
    }
    if (!ok) {
      if (source !== 'registry') {
        this.banned.add(source)
        this.peerGone(source)
        return [{ type: 'ban', peer: source, index }]
      }
      return []
    }
    if (!this.have.get(index)) {
      this.have.set(index)
      this.lastProgress = now
      if (source === 'registry') this.fromRegistry.add(index)
    }
    return []
  }

  /** A request failed without an answer (stream error, registry error). */
  failed (source: Source, index: number, now: number): void {
    this.clearInflight(source, index)
    if (source === 'registry') {
      this.registryFailures++
      this.registryRetryAt = now + REGISTRY_RETRY_MS
    } else {
      this.peerGone(source)
    }
  }

  /** The peer answered that it does not hold `index` after all (it completed or dropped it meanwhile). */
  missing (peer: string, index: number): void {
    this.clearInflight(peer, index)
    const p = this.peers.get(peer)
    if (p?.have != null) p.have.set(index, false)
  }

  /** Forget that `index` is held (the assembled blob failed its digest). */
  reset (): void {
    for (let i = 0; i < this.cfg.pieceCount; i++) this.have.set(i, false)
    this.fromRegistry.clear()
  }

  private clearInflight (source: Source, index: number): void {
    this.inflight.get(index)?.delete(source)
    if (source !== 'registry') this.peers.get(source)?.inflight.delete(index)
    else this.registrySince.delete(index)
  }

  /** When the oldest request for `index` still out started. */
  private inflightSince (index: number, sources: Set<Source>): number {
    let since = Number.POSITIVE_INFINITY
    for (const src of sources) {
      const t = src === 'registry' ? this.registrySince.get(index) : this.peers.get(src)?.inflight.get(index)
      if (t !== undefined && t < since) since = t
    }
    return since
  }

  private startRequest (source: Source, index: number, now: number): void {
    let s = this.inflight.get(index)
    if (s === undefined) { s = new Set(); this.inflight.set(index, s) }
    s.add(source)
    if (source === 'registry') this.registrySince.set(index, now)
    else this.peers.get(source)?.inflight.set(index, now)
  }

  private availability (index: number): number {
    let n = 0
    for (const p of this.peers.values()) if (p.have?.get(index) === true) n++
    return n
  }

  /**
   * Everything to do now. Call after every event and periodically.
   * `requestBudget` and `registryBudget` bound new peer and registry
   * requests this tick, and `peerRoom` new requests to one peer (node-wide
   * caps across all pulls, kept by the caller).
   */
  tick (now: number, requestBudget = Number.POSITIVE_INFINITY, registryBudget = Number.POSITIVE_INFINITY, peerRoom?: (peer: string) => number): PickerAction[] {
    this.lastNow = now
    if (this.finished) return []
    if (this.done) {
      this.finished = true
      return [{ type: 'done' }]
    }
    const out: PickerAction[] = []
    const budget = new TickBudget(requestBudget, registryBudget, peerRoom)
    this.expireRequests(now, out)
    this.queryPeers(now, out)
    const missing = this.order.filter(i => !this.have.get(i))
    const avail = new Map<number, number>()
    for (const i of missing) avail.set(i, this.availability(i))
    const byRarity = [...missing].sort((a, b) => (avail.get(a) as number) - (avail.get(b) as number))
    this.requestFromPeers(byRarity, now, budget, out)
    // Endgame: every missing piece is in flight somewhere; duplicate the slow requests to idle peers.
    if (missing.every(i => (this.inflight.get(i)?.size ?? 0) > 0)) this.endgame(byRarity, now, budget, out)
    for (const i of missing) {
      if ((avail.get(i) as number) > 0) this.waitSince.delete(i)
      else if (!this.waitSince.has(i)) this.waitSince.set(i, now)
    }
    if (this.cfg.registry) this.registryShare(missing, avail, now, budget, out)
    else this.checkStall(missing, now, out)
    // Cheap (in-flight pieces and peers are bounded), so asserted on every
    // tick in production too: a broken invariant stops this pull loudly
    // instead of letting it request the wrong pieces for minutes.
    this.checkInvariants()
    return out
  }

  /**
   * Requests that took too long: the peer counts as gone (a pipelined stream
   * cannot cancel one request). Counted from the request or from the last
   * bytes the peer sent, whichever is later: a loaded peer answers a queue
   * of requests slowly, and dropping it threw away the piece half received
   * and every request behind it, then asked again elsewhere (on a 2-core
   * machine shared with other work, fan-outs failed this way).
   */
  private expireRequests (now: number, out: PickerAction[]): void {
    for (const [peer, p] of this.peers) {
      for (const started of p.inflight.values()) {
        if (now - Math.max(started, p.lastBytes) > this.cfg.requestTimeoutMs) {
          out.push({ type: 'drop', peer, reason: 'timeout' })
          this.peerGone(peer)
          break
        }
      }
    }
  }

  /** Bitfield queries: each peer now and then, less often while it brings nothing new. */
  private queryPeers (now: number, out: PickerAction[]): void {
    for (const [peer, p] of this.peers) {
      if (p.queryInflight) continue
      // A peer with nothing we need is asked again only now and then: it may start pulling too.
      const needsNothing = p.have !== null && !this.peerHasMissing(p.have) && !p.pulling
      const backoff = Math.min(2 ** p.unchanged, MAX_QUERY_BACKOFF)
      const interval = this.cfg.queryIntervalMs * (needsNothing ? Math.max(IDLE_QUERY_FACTOR, backoff) : backoff)
      if (p.have === null || now - p.lastQuery >= interval) {
        if (p.have !== null && p.have.isComplete()) continue
        p.queryInflight = true
        p.lastQuery = now
        out.push({ type: 'query', peer })
      }
    }
  }

  /**
   * Pieces from peers, rarest first, each piece from one peer. Peers still
   * pulling are asked first; a seed (a peer holding the whole blob) only for
   * pieces none of them holds — BitTorrent's super-seeding, seen from the
   * pullers' side. While others pull too, the seeds' pieces are split like
   * the registry's (index mod pullers = rank) and each puller asks a seed
   * for at most maxInflightPerSeed of its own share at a time, so a seed's
   * piece goes to one puller and spreads from there; another share's piece
   * only when this node has nothing in flight to its fellow pullers.
   */
  private requestFromPeers (byRarity: number[], now: number, budget: TickBudget, out: PickerAction[]): void {
    const partial: Array<[string, PeerState]> = []
    const seeds: Array<[string, PeerState]> = []
    for (const entry of this.peers) {
      const have = entry[1].have
      if (have !== null) (have.isComplete() ? seeds : partial).push(entry)
    }
    for (const [peer, p] of partial) this.requestFrom(peer, p, byRarity, now, budget, out, this.cfg.maxInflightPerPeer)
    if (seeds.length === 0) return
    const pullers = [this.cfg.self, ...partial.filter(([, p]) => p.pulling).map(([id]) => id)].sort()
    if (pullers.length === 1) {
      for (const [peer, p] of seeds) this.requestFrom(peer, p, byRarity, now, budget, out, this.cfg.maxInflightPerPeer)
      return
    }
    const rank = pullers.indexOf(this.cfg.self)
    const k = pullers.length
    const unheld = byRarity.filter(i => !partial.some(([, p]) => p.have?.get(i) === true))
    const mine = unheld.filter(i => i % k === rank)
    const idle = partial.every(([, p]) => p.inflight.size === 0)
    const fromSeeds = idle ? [...mine, ...unheld.filter(i => i % k !== rank)] : mine
    for (const [peer, p] of seeds) this.requestFrom(peer, p, fromSeeds, now, budget, out, Math.min(this.cfg.maxInflightPerSeed, this.cfg.maxInflightPerPeer))
  }

  private requestFrom (peer: string, p: PeerState, pieces: number[], now: number, budget: TickBudget, out: PickerAction[], cap: number): void {
    for (const i of pieces) {
      if (p.inflight.size >= cap || !budget.peerMay(peer)) break
      if (p.have?.get(i) !== true || (this.inflight.get(i)?.size ?? 0) > 0) continue
      budget.takePeer(peer)
      this.startRequest(peer, i, now)
      out.push({ type: 'request', peer, index: i })
    }
  }

  /** Duplicates of requests out longer than pieces usually take, to peers not yet asked. */
  private endgame (byRarity: number[], now: number, budget: TickBudget, out: PickerAction[]): void {
    const slowAfter = Math.max(this.cfg.endgameAfterMs, ENDGAME_SLOW_FACTOR * (this.pieceMs ?? 0))
    for (const [peer, p] of this.peers) {
      if (p.have === null) continue
      for (const i of byRarity) {
        if (p.inflight.size >= this.cfg.maxInflightPerPeer || !budget.peerMay(peer)) break
        const s = this.inflight.get(i)
        if (!p.have.get(i) || s === undefined || s.has(peer) || s.size >= this.cfg.endgameDuplicates) continue
        if (now - this.inflightSince(i, s) < slowAfter) continue
        budget.takePeer(peer)
        this.startRequest(peer, i, now)
        out.push({ type: 'request', peer, index: i })
      }
    }
  }

  /** The registry, for pieces no live peer has: this node's share, claimed first (see the top of this file). */
  private registryShare (missing: number[], avail: Map<number, number>, now: number, budget: TickBudget, out: PickerAction[]): void {
    if (this.registryFailures >= MAX_REGISTRY_FAILURES) {
      this.finished = true
      out.push({ type: 'fail', reason: `registry failed ${this.registryFailures} times in a row` })
      return
    }
    const allAnswered = [...this.peers.values()].every(p => p.have !== null)
    if (!allAnswered && now - this.startedAt < this.cfg.startDelayMs) return
    const pullers = [this.cfg.self, ...[...this.peers.entries()].filter(([, p]) => p.pulling).map(([id]) => id)].sort()
    const rank = pullers.indexOf(this.cfg.self)
    const k = pullers.length
    const claimed = new Bitfield(this.cfg.pieceCount)
    for (const i of missing) {
      if ((this.inflight.get(i)?.has('registry')) === true) { claimed.set(i); continue }
      if ((this.inflight.get(i)?.size ?? 0) > 0 || (avail.get(i) as number) > 0) continue
      // Peers making progress that claim the piece (fetching it, or about
      // to as their share): the lowest id among claimers fetches it, the
      // rest wait for it to show up in a bitfield.
      const claimers = this.claimers(i, now)
      const mine = i % k === rank
      const waited = now - (this.waitSince.get(i) ?? now) >= this.cfg.registryDeadlineMs
      if (claimers.ids.length > 0) {
        this.waitSince.set(i, now)
        if (!mine || claimers.underWay || claimers.ids.some(c => c < this.cfg.self)) continue
      } else if (!mine && !waited) {
        continue
      }
      claimed.set(i)
      const since = this.claimedSince.get(i) ?? now
      this.claimedSince.set(i, since)
      if (now - since < this.cfg.claimSettleMs) continue
      // Only on news from after the claim: a peer may have got the piece
      // (or claimed it) since it last answered. On a busy machine answers
      // lagged by seconds, and pieces a peer already held came from the
      // registry again. A peer silent past the deadline is not waited for.
      if (now - since < this.cfg.registryDeadlineMs && !this.everyoneAnsweredSince(since)) continue
      if (this.registrySince.size >= this.cfg.maxRegistryInflight || !budget.registryMay() || now < this.registryRetryAt) continue
      budget.takeRegistry()
      this.startRequest('registry', i, now)
      out.push({ type: 'registry', index: i })
    }
    this.claimed = claimed
    for (const i of [...this.claimedSince.keys()]) if (!claimed.get(i)) this.claimedSince.delete(i)
  }

  /** Without a registry: fail once no live peer has delivered a missing piece for the stall timeout. */
  private checkStall (missing: number[], now: number, out: PickerAction[]): void {
    const anyInflight = missing.some(i => (this.inflight.get(i)?.size ?? 0) > 0)
    if (!anyInflight && now - this.lastProgress >= this.cfg.stallTimeoutMs) {
      this.finished = true
      out.push({ type: 'fail', reason: `no peer delivered a missing piece for ${this.cfg.stallTimeoutMs} ms and there is no registry to fall back on` })
    }
  }

  /** Whether every live peer still short of pieces has answered a query sent at or after `t`. */
  private everyoneAnsweredSince (t: number): boolean {
    for (const p of this.peers.values()) {
      if (p.have !== null && p.have.isComplete()) continue
      if (p.answeredAt < t) return false
    }
    return true
  }

  private peerHasMissing (peerHave: Bitfield): boolean {
    for (let i = 0; i < this.cfg.pieceCount; i++) if (!this.have.get(i) && peerHave.get(i)) return true
    return false
  }

  /** Invariants: asserted at the end of every tick, and by the tests after every step. */
  checkInvariants (): void {
    let reg = 0
    for (const [i, s] of this.inflight) {
      if (s.has('registry')) reg++
      for (const src of s) {
        if (src !== 'registry' && !this.peers.has(src)) throw new PickerInvariantError(`piece ${i} in flight to unknown peer ${src}`)
        if (src !== 'registry' && this.banned.has(src)) throw new PickerInvariantError(`piece ${i} in flight to banned peer ${src}`)
      }
      if (s.size > Math.max(1, this.cfg.endgameDuplicates)) throw new PickerInvariantError(`piece ${i} in flight ${s.size} times`)
    }
    if (this.registrySince.size !== reg) throw new PickerInvariantError(`registry start times for ${this.registrySince.size} pieces but ${reg} in flight`)
    if (reg > this.cfg.maxRegistryInflight) throw new PickerInvariantError(`${reg} registry requests in flight, more than ${this.cfg.maxRegistryInflight}`)
    for (const [peer, p] of this.peers) if (p.inflight.size > this.cfg.maxInflightPerPeer) throw new PickerInvariantError(`peer ${peer} has ${p.inflight.size} requests in flight, more than ${this.cfg.maxInflightPerPeer}`)
  }
}
