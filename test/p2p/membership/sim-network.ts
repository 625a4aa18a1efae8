// A seeded simulator for SWIM cores: N cores in one process, a network that
// delays and drops messages (every message goes through the real codec), and
// crash/restart that keeps only the persisted incarnation. A failing run
// replays from its seed.
import { SwimCore } from '../../../p2p/membership/core/swim-core.js'
import { seededRandom, type Random } from '../../../p2p/membership/core/random.js'
import type { MemberEvent, MemberState } from '../../../p2p/membership/core/types.js'
import { decodeMessage, encodeMessage } from '../../../p2p/membership/codec.js'
import { emptyMeta } from '../../../p2p/membership/meta.js'
import type { SwimConfig } from '../../../p2p/membership/profiles.js'
import { simVerifyLeft } from './sim-left.js'

export interface SimOptions {
  n: number
  seed: number
  config: SwimConfig
  /** Fraction of messages dropped. */
  loss?: number
  /** Delivery delay in ticks, inclusive range; default [1, 1]: one tick (100 ms in the default profiles) bounds a one-way trip. */
  latency?: [number, number]
}

interface SimNode {
  id: string
  core: SwimCore
  up: boolean
  /** What the agent would persist: the highest incarnation announced. */
  persistedIncarnation: number
}

interface InFlight { at: number, from: string, to: string, bytes: Uint8Array }

export interface LoggedEvent { tick: number, observer: string, kind: MemberEvent['kind'], id: string, state: MemberState, incarnation: number }

export class SimCluster {
  readonly nodes = new Map<string, SimNode>()
  readonly log: LoggedEvent[] = []
  now = 0
  loss: number
  bytesSent = 0
  messagesSent = 0
  maxMessageBytes = 0
  private readonly net: Random
  private readonly latency: [number, number]
  private inflight: InFlight[] = []
  /** Pairs (from>to) whose messages are dropped. */
  private readonly cut = new Set<string>()
  private readonly config: SwimConfig
  private seedCounter: number

  constructor (opts: SimOptions) {
    this.config = opts.config
    this.net = seededRandom(opts.seed ^ 0x5eed)
    this.loss = opts.loss ?? 0
    this.latency = opts.latency ?? [1, 1]
    this.seedCounter = opts.seed
    for (let i = 0; i < opts.n; i++) this.add(`n${i}`, 0)
  }

  private add (id: string, lastIncarnation: number): SimNode {
    const core = new SwimCore({
      self: id,
      meta: emptyMeta(id, 'server', [`/sim/${id}`]),
      lastIncarnation,
      config: this.config,
      random: seededRandom(++this.seedCounter * 7919),
      verifyLeft: simVerifyLeft
    })
    const node: SimNode = { id, core, up: true, persistedIncarnation: core.incarnation() }
    this.nodes.set(id, node)
    return node
  }

  core (id: string): SwimCore {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n.core
  }

  ids (): string[] { return [...this.nodes.keys()] }
  upIds (): string[] { return [...this.nodes.values()].filter(n => n.up).map(n => n.id) }

  /** Every other node joins through `seed`. */
  joinAll (seed = 'n0'): void {
    for (const id of this.ids()) if (id !== seed) this.core(id).join([{ id: seed, addrs: [`/sim/${seed}`] }])
  }

  crash (id: string): void {
    const n = this.nodes.get(id)
    if (n !== undefined) n.up = false
  }

  /** A new life for a crashed node: same id, starting above its persisted incarnation, joining through `seed`. */
  restart (id: string, seed = 'n0'): void {
    const old = this.nodes.get(id)
    const fresh = this.add(id, old?.persistedIncarnation ?? 0)
    fresh.core.join([{ id: seed, addrs: [`/sim/${seed}`] }])
  }

  /** Drops everything between `id` and the rest (both directions) until `heal`. */
  isolate (id: string): void {
    for (const other of this.ids()) {
      if (other === id) continue
      this.cut.add(`${id}>${other}`)
      this.cut.add(`${other}>${id}`)
    }
  }

  /** Drops only messages *to* `id`: it still sends but never hears back. */
  deafen (id: string): void {
    for (const other of this.ids()) if (other !== id) this.cut.add(`${other}>${id}`)
  }

  heal (): void { this.cut.clear() }

  step (): void {
    this.now++
    const due = this.inflight.filter(m => m.at <= this.now)
    this.inflight = this.inflight.filter(m => m.at > this.now)
    for (const m of due) {
      const to = this.nodes.get(m.to)
      if (to === undefined || !to.up) continue
      to.core.receive(m.from, decodeMessage(m.bytes))
    }
    for (const n of this.nodes.values()) if (n.up) n.core.tick()
    for (const n of this.nodes.values()) {
      if (!n.up) continue
      const d = n.core.drain()
      n.persistedIncarnation = Math.max(n.persistedIncarnation, n.core.incarnation())
      for (const e of d.events) this.log.push({ tick: this.now, observer: n.id, kind: e.kind, id: e.member.id, state: e.member.state, incarnation: e.member.incarnation })
      for (const o of d.send) {
        const bytes = encodeMessage(o.msg)
        this.messagesSent++
        this.bytesSent += bytes.byteLength
        this.maxMessageBytes = Math.max(this.maxMessageBytes, bytes.byteLength)
        if (this.cut.has(`${n.id}>${o.to}`)) continue
        if (this.loss > 0 && this.net() < this.loss) continue
        const [lo, hi] = this.latency
        this.inflight.push({ at: this.now + lo + Math.floor(this.net() * (hi - lo + 1)), from: n.id, to: o.to, bytes })
      }
    }
  }

  run (ticks: number): void {
    for (let i = 0; i < ticks; i++) this.step()
  }

  /** Steps until `pred` holds (checked after each step) or `maxTicks` pass; returns the tick or null. */
  runUntil (pred: () => boolean, maxTicks: number): number | null {
    for (let i = 0; i < maxTicks; i++) {
      this.step()
      if (pred()) return this.now
    }
    return null
  }

  /** The state of `id` as `observer` sees it. */
  stateOf (observer: string, id: string): MemberState | undefined {
    return this.core(observer).member(id)?.state
  }

  /** True when every up node (other than `id`) sees `id` in `state`. */
  allSee (id: string, state: MemberState): boolean {
    return this.upIds().filter(o => o !== id).every(o => this.stateOf(o, id) === state)
  }

  /** True when every up node sees every up node alive. */
  converged (): boolean {
    const up = this.upIds()
    return up.every(o => up.every(id => this.stateOf(o, id) === 'alive'))
  }
}
