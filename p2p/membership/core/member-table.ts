// The member list and the rules for merging news into it (memberlist
// state.go: aliveNode, suspectNode, deadNode). Incarnation numbers order
// news about one member; at equal incarnation the precedence is
// left > dead > suspect > alive, and only the member itself may raise its
// incarnation (to refute). A reaped member leaves a tombstone so stale news
// cannot bring it back. Only a member may say it left: `left` news counts
// only with the member's own signature (left-proof.ts), which travels with it.
import { metaEqual, type MemberMeta } from '../meta.js'
import type { LeftVerifier } from '../left-proof.js'
import type { Gossip } from '../messages.js'
import type { Awareness } from './awareness.js'
import { Suspicion, expectedConfirmations, suspicionMinMs } from './suspicion.js'
import type { MemberEventKind, MemberState, MemberView, SwimCounters } from './types.js'
import type { SwimConfig } from '../profiles.js'

export interface MemberRecord {
  id: string
  state: MemberState
  incarnation: number
  meta: MemberMeta
  stateChangedAtTick: number
  /** With state `left`: the member's signature of its departure, relayed in push-pull. */
  leftSig?: string
}

interface Tombstone { incarnation: number, state: 'dead' | 'left', atTick: number, leftSig?: string }

/** What merging news does besides changing the table. */
export interface TableEffects {
  broadcast: (g: Gossip) => void
  event: (kind: MemberEventKind, rec: MemberRecord) => void
  /** A member became probe-able (new, or back from dead/left). */
  added: (id: string) => void
}

export class MemberTable {
  readonly self: string
  readonly members = new Map<string, MemberRecord>()
  readonly tombstones = new Map<string, Tombstone>()
  private readonly suspicions = new Map<string, Suspicion>()
  /** Set once this node has left: it no longer refutes news of its departure. */
  leaving = false

  constructor (
    self: MemberRecord,
    private readonly config: Readonly<SwimConfig>,
    private readonly awareness: Awareness,
    private readonly counters: SwimCounters,
    private readonly fx: TableEffects,
    private readonly now: () => number,
    private readonly verifyLeft: LeftVerifier
  ) {
    this.self = self.id
    this.members.set(self.id, self)
  }

  get me (): MemberRecord {
    const me = this.members.get(this.self)
    if (me === undefined) throw new Error('invariant: the member table lost its own record')
    return me
  }

  /** Members that count towards N in the log(N) formulas: alive or suspect, ourselves included. */
  liveCount (): number {
    let n = 0
    for (const m of this.members.values()) if (m.state === 'alive' || m.state === 'suspect') n++
    return n
  }

  view (rec: MemberRecord): MemberView {
    return { id: rec.id, state: rec.state, incarnation: rec.incarnation, meta: rec.meta, stateChangedAtTick: rec.stateChangedAtTick }
  }

  apply (g: Gossip): void {
    switch (g.k) {
      case 'alive': this.onAlive(g.id, g.inc, g.meta); break
      case 'suspect': this.onSuspect(g.id, g.inc, g.from); break
      case 'dead': this.onDead(g.id, g.inc, g.from); break
      case 'left': this.onLeft(g.id, g.inc, g.sig); break
    }
  }

  onAlive (id: string, inc: number, meta: MemberMeta): void {
    const rec = this.members.get(id)
    if (id === this.self) {
      // Our own news echoing back is fine; any other claim about us (an older
      // life's metadata at our incarnation, or a newer incarnation we never
      // issued) is refuted with a newer incarnation.
      const me = this.me
      if (this.leaving || inc < me.incarnation) return
      if (inc === me.incarnation && metaEqual(meta, me.meta)) return
      this.refute(inc)
      return
    }
    if (rec === undefined) {
      const tomb = this.tombstones.get(id)
      if (tomb !== undefined && inc <= tomb.incarnation) return
      if (this.members.size >= this.config.maxMembers) return
      const fresh: MemberRecord = { id, state: 'alive', incarnation: inc, meta, stateChangedAtTick: this.now() }
      this.tombstones.delete(id)
      this.members.set(id, fresh)
      this.fx.broadcast({ k: 'alive', id, inc, meta })
      this.fx.added(id)
      this.fx.event('joined', fresh)
      return
    }
    if (inc <= rec.incarnation) return
    const prev = rec.state
    const metaChanged = !metaEqual(meta, rec.meta)
    this.suspicions.delete(id)
    rec.incarnation = inc
    rec.meta = meta
    delete rec.leftSig
    if (prev !== 'alive') {
      rec.state = 'alive'
      rec.stateChangedAtTick = this.now()
    }
    this.fx.broadcast({ k: 'alive', id, inc, meta })
    if (prev === 'dead' || prev === 'left') {
      this.fx.added(id)
      this.fx.event('joined', rec)
    } else if (prev === 'suspect') {
      this.counters.suspicionsRefuted++
      this.fx.event('alive', rec)
      if (metaChanged) this.fx.event('updated', rec)
    } else if (metaChanged) {
      this.fx.event('updated', rec)
    }
  }

  onSuspect (id: string, inc: number, from: string): void {
    const rec = this.members.get(id)
    if (rec === undefined || inc < rec.incarnation) return
    const s = this.suspicions.get(id)
    if (s !== undefined && rec.state === 'suspect' && inc <= s.incarnation) {
      // An independent accuser shortens the timeout (Lifeguard); re-gossip
      // only news, so confirmations flow without flooding.
      if (s.confirm(from)) this.fx.broadcast({ k: 'suspect', id, inc: s.incarnation, from })
      return
    }
    if (rec.state !== 'alive' && rec.state !== 'suspect') return
    if (id === this.self) {
      if (!this.leaving) this.refute(inc)
      return
    }
    this.fx.broadcast({ k: 'suspect', id, inc, from })
    const wasAlive = rec.state === 'alive'
    rec.incarnation = inc
    rec.state = 'suspect'
    if (wasAlive) rec.stateChangedAtTick = this.now()
    const n = this.liveCount()
    const minMs = suspicionMinMs(this.config.suspicionMult, n, this.config.probeIntervalMs)
    this.suspicions.set(id, new Suspicion({
      from,
      incarnation: inc,
      startTick: this.now(),
      k: expectedConfirmations(this.config.suspicionMult, n),
      minMs,
      maxMs: this.config.suspicionMaxTimeoutMult * minMs,
      tickMs: this.config.tickMs
    }))
    if (wasAlive) this.fx.event('suspect', rec)
  }

  onDead (id: string, inc: number, from: string): void {
    const rec = this.members.get(id)
    if (rec === undefined || inc < rec.incarnation) return
    if (rec.state === 'dead' || rec.state === 'left') return
    if (id === this.self) {
      if (!this.leaving) this.refute(inc)
      return
    }
    this.suspicions.delete(id)
    this.fx.broadcast({ k: 'dead', id, inc, from })
    rec.incarnation = inc
    rec.state = 'dead'
    rec.stateChangedAtTick = this.now()
    this.fx.event('dead', rec)
  }

  /**
   * News that `id` left. Taken only with `id`'s own signature: another
   * member saying so is ignored (any member could otherwise make the cluster
   * drop a voter or its capsules), and the signature is re-gossiped with it.
   */
  onLeft (id: string, inc: number, sig: string | undefined): void {
    const rec = this.members.get(id)
    if (rec === undefined || inc < rec.incarnation || rec.state === 'left') return
    // News of our own departure, signed or not, is refuted: it may be our
    // own from before we joined again.
    if (id === this.self) {
      if (!this.leaving) this.refute(inc)
      return
    }
    if (!this.verifyLeft(id, inc, sig)) return
    // Left outranks dead at the same incarnation: a member that said goodbye
    // while someone was declaring it dead has left, not failed.
    this.suspicions.delete(id)
    this.fx.broadcast({ k: 'left', id, inc, sig })
    rec.incarnation = inc
    rec.state = 'left'
    rec.leftSig = sig
    rec.stateChangedAtTick = this.now()
    this.fx.event('left', rec)
  }

  /** Our answer to news of our own failure: a newer incarnation, and a hint that we may be the slow one. */
  refute (accusedInc: number): void {
    const me = this.me
    me.incarnation = Math.max(me.incarnation, accusedInc) + 1
    this.awareness.applyDelta(1)
    this.counters.selfRefutations++
    this.fx.broadcast({ k: 'alive', id: me.id, inc: me.incarnation, meta: me.meta })
  }

  /** Fires expired suspicions (with a stale-timer guard: the member must still be suspect at the same incarnation). */
  checkSuspicions (): void {
    const now = this.now()
    for (const [id, s] of this.suspicions) {
      if (!s.expired(now)) continue
      this.suspicions.delete(id)
      const rec = this.members.get(id)
      if (rec === undefined || rec.state !== 'suspect' || rec.incarnation !== s.incarnation) continue
      this.onDead(id, s.incarnation, this.self)
    }
  }

  /** Moves dead/left members older than the reclaim time to tombstones; expires old tombstones. */
  reap (reclaimTicks: number, tombstoneTicks: number): void {
    const now = this.now()
    for (const [id, rec] of this.members) {
      if (id === this.self || (rec.state !== 'dead' && rec.state !== 'left')) continue
      if (now - rec.stateChangedAtTick < reclaimTicks) continue
      this.members.delete(id)
      this.tombstones.set(id, { incarnation: rec.incarnation, state: rec.state, atTick: now, ...(rec.leftSig !== undefined ? { leftSig: rec.leftSig } : {}) })
      this.fx.event('reaped', rec)
    }
    for (const [id, t] of this.tombstones) {
      if (now - t.atTick >= tombstoneTicks) this.tombstones.delete(id)
    }
    // Bounded: the oldest tombstones go first (Map keeps insertion order).
    for (const id of this.tombstones.keys()) {
      if (this.tombstones.size <= this.config.maxMembers) break
      this.tombstones.delete(id)
    }
  }
}
