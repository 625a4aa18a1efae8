// The agent's side of membership: builds the SWIM service from the profile
// and config overrides, persists the incarnation, signs this node's leave
// with its key, keeps reconnect seeds fresh, and turns members into the
// `status` view of CLI.md.
import type { Stream, StreamHandler } from '@libp2p/interface'
import { MembershipService } from '../p2p/membership/service.js'
import { PROFILES, type SwimConfig } from '../p2p/membership/profiles.js'
import type { CapsulePolicy, MemberMeta } from '../p2p/membership/meta.js'
import type { MemberEvent } from '../p2p/membership/core/types.js'
import type { LeftSigner } from '../p2p/membership/left-proof.js'
import { pickRandom } from '../p2p/membership/core/random.js'
import type { Config } from './config.js'
import type { Logger } from './logger.js'
import type { BoltLibp2p } from '../p2p/node.js'

export interface MemberView {
  id: string
  name: string
  state: 'alive' | 'suspect' | 'dead' | 'left'
  role: 'server' | 'client'
  addrs: string[]
  resources: MemberMeta['resources']
  labels: Record<string, string>
  incarnation: number
  /** The member's bolt-agent version, as it gossips it. */
  version?: string
  /** What the member's config lets capsules have (host network, gaming); absent from older agents. */
  capsules?: CapsulePolicy
  /** The member's capsule subnet and dynamic port range, once announced. */
  network?: MemberMeta['network']
}

export interface MembershipHostInit {
  libp2p: BoltLibp2p
  profile: Config['profile']
  overrides: Config['membership']
  incarnation: number
  meta: MemberMeta
  openStream: (peerId: string, addrs: string[], protocol: string, signal: AbortSignal) => Promise<Stream>
  guard: (h: StreamHandler) => StreamHandler
  onIncarnation: (n: number) => void
  /** This node's libp2p key: signs its `left` news, the only kind others take. */
  signer: LeftSigner
  /** Members evicted by an operator: shown, and handed to Raft and the scheduler, as left. */
  evicted: (peerId: string) => boolean
  onSeeds: (seeds: string[]) => void
  log: Logger
}

const MAX_SEEDS = 16
/** Dead members tried in one reconnect round by a node that sees none alive (see reconnect()). */
export const ISOLATED_RECONNECT_FANOUT = 4
/** A reconnect push-pull not answered within this long is given up until the next round. */
const RECONNECT_TIMEOUT_MS = 2000

/** How often a dead member is retried: twice per push-pull interval, at most every 30 s, at least every 1 s. */
export function reconnectIntervalMs (c: SwimConfig): number {
  const pp = c.pushPullIntervalMs > 0 ? c.pushPullIntervalMs : 30_000
  return Math.max(1000, Math.min(30_000, Math.floor(pp / 2)))
}

/** One entry per peer, its addresses merged. */
function groupSeeds (seeds: Array<{ id: string, addrs: string[] }>): Array<{ id: string, addrs: string[] }> {
  const byId = new Map<string, Set<string>>()
  for (const s of seeds) {
    const set = byId.get(s.id) ?? new Set<string>()
    for (const a of s.addrs) set.add(a)
    byId.set(s.id, set)
  }
  return [...byId].map(([id, addrs]) => ({ id, addrs: [...addrs] }))
}

export function swimConfigFor (profile: Config['profile'], o: Config['membership']): SwimConfig {
  const base = PROFILES[profile]
  return {
    ...base,
    ...(o.probe_interval_ms !== undefined ? { probeIntervalMs: o.probe_interval_ms } : {}),
    ...(o.probe_timeout_ms !== undefined ? { probeTimeoutMs: o.probe_timeout_ms } : {}),
    ...(o.suspicion_mult !== undefined ? { suspicionMult: o.suspicion_mult } : {}),
    ...(o.push_pull_interval_ms !== undefined ? { pushPullIntervalMs: o.push_pull_interval_ms } : {}),
    ...(o.gossip_interval_ms !== undefined ? { gossipIntervalMs: o.gossip_interval_ms } : {})
  }
}

export class MembershipHost extends EventTarget {
  readonly service: MembershipService
  readonly config: SwimConfig
  private seedTimer: NodeJS.Timeout | undefined
  private seedDebounce: NodeJS.Timeout | undefined
  private reconnectTimer: NodeJS.Timeout | undefined
  /** True while this node sees no other member alive or suspect (see reconnect()). */
  private isolated = false
  /** Longest dial while isolated: a reconnect round's wait, more where probes may take longer (slow links). */
  private readonly isolatedDialMs: number
  private readonly init: MembershipHostInit

  constructor (init: MembershipHostInit) {
    super()
    this.init = init
    this.config = swimConfigFor(init.profile, init.overrides)
    this.isolatedDialMs = Math.max(RECONNECT_TIMEOUT_MS, 2 * this.config.probeTimeoutMs)
    this.service = new MembershipService({
      libp2p: init.libp2p,
      self: { id: init.libp2p.peerId.toString(), meta: init.meta },
      config: this.config,
      lastIncarnation: init.incarnation,
      onIncarnation: init.onIncarnation,
      signer: init.signer,
      // While isolated, no dial may outlive a reconnect round: libp2p makes a
      // new dial to a peer join the one in flight, and a dial started during
      // a cut only resends its first packet on the transport's backoff
      // (1, 2, 4 s), so the first round after the link returns would wait on it.
      openStream: async (peerId, addrs, protocol, signal) => await init.openStream(peerId, addrs, protocol, this.isolated ? AbortSignal.any([signal, AbortSignal.timeout(this.isolatedDialMs)]) : signal),
      guard: init.guard,
      onError: (where, peerId, err) => { init.log.debug({ where, peerId, err: (err as Error).message }, 'membership message failed') }
    })
  }

  async start (): Promise<void> {
    this.service.addEventListener('member', (evt) => { this.onEvent((evt as CustomEvent<MemberEvent>).detail) })
    await this.service.start()
    this.init.onIncarnation(this.service.incarnation())
    this.seedTimer = setInterval(() => { this.saveSeeds() }, 10_000)
    this.seedTimer.unref()
    this.reconnectTimer = setInterval(() => { this.reconnect() }, reconnectIntervalMs(this.config))
    this.reconnectTimer.unref()
  }

  async stop (): Promise<void> {
    if (this.seedTimer !== undefined) clearInterval(this.seedTimer)
    if (this.reconnectTimer !== undefined) clearInterval(this.reconnectTimer)
    if (this.seedDebounce !== undefined) clearTimeout(this.seedDebounce)
    this.saveSeeds()
    await this.service.stop()
  }

  async join (seeds: Array<{ id: string, addrs: string[] }>): Promise<void> { await this.service.join(groupSeeds(seeds)) }

  /**
   * Joins through seeds, and if none answers now, keeps trying in the
   * background with bounded back-off (a restarted node whose peers are down
   * or unreachable for a while must come back by itself).
   */
  joinInBackground (seeds: Array<{ id: string, addrs: string[] }>, signal: AbortSignal): void {
    const grouped = groupSeeds(seeds)
    if (grouped.length === 0) return
    void (async () => {
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          await this.service.join(grouped, { signal })
          return
        } catch (err) {
          if (signal.aborted) return
          const wait = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5))
          this.init.log.warn({ err: (err as Error).message, retryInMs: wait }, 'no seed answered; retrying')
          await new Promise(resolve => setTimeout(resolve, wait))
        }
      }
    })()
  }
  /**
   * Joins through the seeds at start. A joiner waits for one answer (admission
   * just answered, so a seed is up); a failure there, and every other start,
   * keeps trying in the background.
   */
  async joinSeeds (seeds: Array<{ id: string, addrs: string[] }>, waitForOne: boolean, signal: AbortSignal): Promise<void> {
    if (waitForOne) {
      try {
        await this.join(seeds)
        return
      } catch (err) {
        this.init.log.info({ err: (err as Error).message }, 'no seed answered the first join; retrying in the background')
      }
    }
    this.joinInBackground(seeds, signal)
  }

  /** Calls `fn` on every change of a member's state. */
  onMember (fn: (id: string, state: string) => void): void {
    this.addEventListener('member', (evt) => {
      const { member } = (evt as CustomEvent<{ member: { id: string, state: string } }>).detail
      fn(member.id, member.state)
    })
  }

  async leave (): Promise<void> { await this.service.leave() }
  setDropRate (rate: number): void { this.service.setDropRate(rate) }
  updateMeta (meta: MemberMeta): void { this.service.updateMeta(meta) }
  stats (): { probesSent: number, probesFailed: number, suspicionsRaised: number, suspicionsRefuted: number } { return this.service.stats() }

  bytesByProtocol (): Record<string, { in: number, out: number }> {
    const s = this.service.stats()
    return { '/bolt/swim/1': { in: s.bytesIn, out: s.bytesOut } }
  }

  /** Members sorted by name (as status shows them). */
  view (): MemberView[] {
    return this.heardOrder().sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
  }

  /** Members in the order this node first heard of them (autopilot's join order). */
  heardOrder (): MemberView[] {
    return this.service.members().map(m => ({
      id: m.id,
      name: m.meta.name,
      state: this.init.evicted(m.id) ? 'left' as const : m.state,
      role: m.meta.role,
      addrs: m.meta.addrs,
      resources: m.meta.resources,
      labels: m.meta.labels,
      incarnation: m.incarnation,
      version: m.meta.version,
      ...(m.meta.capsules !== undefined ? { capsules: m.meta.capsules } : {}),
      ...(m.meta.network !== undefined ? { network: m.meta.network } : {})
    }))
  }

  countByState (): Record<string, number> {
    const out: Record<string, number> = { alive: 0, suspect: 0, dead: 0, left: 0 }
    for (const m of this.service.members()) out[m.state] = (out[m.state] ?? 0) + 1
    return out
  }

  /** Alive members with addresses, for a joiner's welcome. */
  dialableMembers (): Array<{ id: string, addrs: string[] }> {
    return this.service.members().filter(m => m.state === 'alive' && m.meta.addrs.length > 0 && !this.init.evicted(m.id)).map(m => ({ id: m.id, addrs: m.meta.addrs }))
  }

  private onEvent (e: MemberEvent): void {
    if (e.member.id !== this.init.libp2p.peerId.toString() && (e.member.state === 'alive' || e.member.state === 'suspect')) this.isolated = false
    this.init.log.info({ member: e.member.id, name: e.member.meta.name, incarnation: e.member.incarnation }, `member ${e.kind}`)
    this.dispatchEvent(new CustomEvent('member', { detail: e }))
    // Keep reconnect seeds fresh soon after any change, so a kill -9 right
    // after joining still restarts with somewhere to dial.
    this.seedDebounce ??= setTimeout(() => { this.seedDebounce = undefined; this.saveSeeds() }, 500)
  }

  /**
   * Serf's reconnect: SWIM never probes dead members, so after a partition
   * heals both sides would stay dead to each other. Each round, push-pull
   * with one dead (not left) member; if it answers, the exchange tells it
   * it was declared dead and it refutes with a higher incarnation.
   *
   * A node that sees no other member alive was most likely the one cut off.
   * Its way back may be a single member (a NATed agent's relay: the others
   * are reachable only through it), and drawing one dead member per round
   * would find it after a lucky draw — 1/3 per round with three members, so
   * sometimes only after many rounds. Such a node tries up to
   * ISOLATED_RECONNECT_FANOUT dead members in the same round instead.
   */
  private reconnect (): void {
    const self = this.init.libp2p.peerId.toString()
    const others = this.service.members().filter(m => m.id !== self)
    const dead = others.filter(m => m.state === 'dead')
    this.isolated = others.length > 0 && !others.some(m => m.state === 'alive' || m.state === 'suspect')
    if (dead.length === 0) return
    const picks = pickRandom(Math.random, dead, this.isolated ? ISOLATED_RECONNECT_FANOUT : 1)
    void this.service.join(picks.map(m => ({ id: m.id, addrs: m.meta.addrs })), { timeoutMs: RECONNECT_TIMEOUT_MS })
      .catch((err: Error) => { this.init.log.debug({ err: err.message }, 'reconnect round: no dead member answered') }) // the next round tries again
  }

  private saveSeeds (): void {
    const self = this.init.libp2p.peerId.toString()
    // Relayed addresses already end in /p2p/ID and name the relay first: keep only direct ones.
    const seeds = this.dialableMembers().filter(m => m.id !== self).slice(0, MAX_SEEDS).flatMap(m => m.addrs.filter(a => !a.includes('/p2p-circuit') && !a.includes('/p2p/')).slice(0, 2).map(a => `${a}/p2p/${m.id}`))
    if (seeds.length > 0) this.init.onSeeds(seeds)
  }
}
