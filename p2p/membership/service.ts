// The libp2p driver of the SWIM core: ticks it on a timer, carries its
// messages as length-prefixed CBOR frames on one /bolt/swim/1 stream per
// member (the shared per-peer link of p2p/peer-link.ts: opened on the first
// message, closed after STREAM_IDLE_MS without one), and turns its events
// into DOM events. All protocol logic is in core/; this file only does I/O,
// bounds it, and counts it.
import { randomInt } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Connection, Libp2p, Stream, StreamHandler } from '@libp2p/interface'
import { MAX_MESSAGE_BYTES, decodeMessage, encodeMessage } from './codec.js'
import { SwimCore, joinWindowMs } from './core/swim-core.js'
import { seededRandom } from './core/random.js'
import type { MemberEvent, MemberView, Outgoing, SwimCounters } from './core/types.js'
import { MemberMetaSchema, type MemberMeta } from './meta.js'
import { LAN, checkConfig, type SwimConfig } from './profiles.js'
import { signLeft, verifyLeft, type LeftSigner } from './left-proof.js'
import { PeerLinks, classifyEnd } from '../peer-link.js'

export const SWIM_PROTOCOL = '/bolt/swim/1'
/** Outgoing messages in flight at once; beyond this they are dropped (SWIM tolerates loss). */
export const MAX_INFLIGHT_SENDS = 256
/**
 * Time allowed to deliver one message, dial included. Deliberately longer
 * than a probe interval: the first message to a member needs a connection
 * (dial + handshake: seconds on a loaded host), and aborting it at the probe
 * deadline would abort the dial too, so under load no connection would ever
 * complete. A late message is harmless (a stale ack's seq is ignored; gossip
 * is idempotent); MAX_INFLIGHT_SENDS bounds what waits.
 */
export const SEND_TIMEOUT_MS = 10_000
/**
 * A stream to a member that carried no message for this long is closed. (A
 * stream per message cost a protocol negotiation and a stream set-up and
 * teardown on both ends each time.)
 */
export const STREAM_IDLE_MS = 15_000
/** Concurrent inbound/outbound /bolt/swim/1 streams per connection. */
export const MAX_STREAMS_PER_CONNECTION = 64

/** The parts of a libp2p node the service uses. */
export type SwimLibp2p = Pick<Libp2p, 'peerId' | 'handle' | 'unhandle' | 'dialProtocol'>

/** Opens a stream to a peer (the admission layer wraps this to admit the peer first). */
export type OpenStream = (peerId: string, addrs: string[], protocol: string, signal: AbortSignal) => Promise<Stream>

export interface MembershipServiceInit {
  libp2p: SwimLibp2p
  /** This node: its metadata (and, as a check, its id, which must be the libp2p peer id). */
  self: { id?: string, meta: MemberMeta }
  /** A profile from profiles.ts, possibly overridden. Default: LAN. */
  config?: SwimConfig
  /**
   * The last incarnation this peer id announced (persisted in the data dir);
   * the service starts above it. Default 0.
   */
  lastIncarnation?: number
  /** Called whenever this node's incarnation changes, so it can be persisted. */
  onIncarnation?: (incarnation: number) => void
  /** Default: `libp2p.dialProtocol` to the member's addresses (or its peer id alone). */
  openStream?: OpenStream
  /** Wraps the inbound handler (the admission layer refuses non-members). */
  guard?: (handler: StreamHandler) => StreamHandler
  /** Fault injection: drop this fraction of outgoing and incoming messages. */
  faultHook?: { dropRate: number }
  /** Told of every failed send or rejected inbound frame (for debug logs); must not throw. */
  onError?: (where: 'send' | 'receive', peerId: string, err: unknown) => void
  /** Seed of the core's random source (default: random). */
  seed?: number
  /**
   * This node's libp2p private key (or anything that signs with it): signs
   * its `left` news. Without it, a leave is not taken as one by the others.
   */
  signer?: LeftSigner
  protocol?: string
}

export interface MembershipStats extends SwimCounters {
  bytesIn: number
  bytesOut: number
  /** Sends that failed (dial, stream or write errors, timeouts). */
  sendFailures: number
  /** Inbound frames rejected as oversized or malformed. */
  decodeErrors: number
  /** Inbound streams that failed otherwise (reset, timeout). */
  receiveErrors: number
  /** Messages dropped by the fault hook. */
  faultDrops: number
  /** Messages dropped because MAX_INFLIGHT_SENDS were in flight. */
  overflowDrops: number
}

export class JoinError extends Error {
  override name = 'JoinError'
}

export class MembershipStoppedError extends Error {
  override name = 'MembershipStoppedError'
}

export class InvalidMetaError extends Error {
  override name = 'InvalidMetaError'
}

interface JoinWaiter { resolve: () => void, reject: (err: Error) => void, seeds: string[] }

/**
 * Events: `member` (CustomEvent<MemberEvent>) for every membership change,
 * `incarnation` (CustomEvent<number>) when this node's incarnation changes.
 */
export class MembershipService extends EventTarget {
  readonly protocol: string
  readonly config: Readonly<SwimConfig>
  private readonly core: SwimCore
  private readonly libp2p: SwimLibp2p
  private readonly openStream: OpenStream
  private readonly guard: ((h: StreamHandler) => StreamHandler) | undefined
  private readonly onIncarnation: ((n: number) => void) | undefined
  private readonly onError: ((where: 'send' | 'receive', peerId: string, err: unknown) => void) | undefined
  private readonly signer: LeftSigner | undefined
  private dropRate: number
  private timer: NodeJS.Timeout | undefined
  private shutdown = new AbortController()
  private running = false
  private readonly inflight = new Set<Promise<void>>()
  /** Per member: its open stream, if any, and the frames waiting to go on it. */
  private readonly links: PeerLinks
  private readonly joinWaiters = new Set<JoinWaiter>()
  private lastIncarnationSeen: number
  private readonly io = { sendFailures: 0, decodeErrors: 0, receiveErrors: 0, faultDrops: 0, overflowDrops: 0 }

  constructor (init: MembershipServiceInit) {
    super()
    const self = init.libp2p.peerId.toString()
    if (init.self.id !== undefined && init.self.id !== self) throw new Error(`membership: self.id ${init.self.id} is not the libp2p peer id ${self}`)
    const meta = MemberMetaSchema.safeParse(init.self.meta)
    if (!meta.success) throw new InvalidMetaError(`membership: invalid metadata: ${meta.error.issues[0]?.message ?? 'invalid'}`)
    this.libp2p = init.libp2p
    this.protocol = init.protocol ?? SWIM_PROTOCOL
    this.config = checkConfig(init.config ?? LAN)
    this.openStream = init.openStream ?? this.dialDefault.bind(this)
    this.guard = init.guard
    this.onIncarnation = init.onIncarnation
    this.onError = init.onError
    this.signer = init.signer
    this.dropRate = init.faultHook?.dropRate ?? 0
    this.core = new SwimCore({
      self,
      meta: meta.data,
      lastIncarnation: init.lastIncarnation ?? 0,
      config: this.config,
      random: seededRandom(init.seed ?? randomInt(2 ** 31)),
      verifyLeft
    })
    this.lastIncarnationSeen = this.core.incarnation()
    this.links = new PeerLinks({
      // A frame resent from a failed link has no addresses: the member's current ones.
      open: async (to, signal, addrs) => await this.openStream(to, (addrs as string[] | undefined) ?? this.core.member(to)?.meta.addrs ?? [], this.protocol, signal),
      maxFrameBytes: MAX_MESSAGE_BYTES,
      idleMs: STREAM_IDLE_MS,
      onFailure: 'fresh-stream',
      openTimeoutMs: this.sendTimeoutMs(),
      writeTimeoutMs: this.sendTimeoutMs()
    })
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.shutdown = new AbortController()
    this.links.start()
    const handler: StreamHandler = (stream, connection) => this.onStream(stream, connection)
    await this.libp2p.handle(this.protocol, this.guard !== undefined ? this.guard(handler) : handler, {
      maxInboundStreams: MAX_STREAMS_PER_CONNECTION,
      maxOutboundStreams: MAX_STREAMS_PER_CONNECTION,
      runOnLimitedConnection: true
    })
    // Missed ticks are not caught up after a stall (GC, SIGSTOP, an overloaded
    // host): the stalled node's logical clock simply runs slow, so it is
    // slower to accuse others — what Lifeguard wants from an unhealthy node.
    this.timer = setInterval(() => { this.core.tick(); this.flush() }, this.config.tickMs)
    this.onIncarnation?.(this.core.incarnation())
  }

  /** Stops ticking and handling; waits for sends in flight (aborted). No timer or stream stays open. */
  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    this.shutdown.abort(new MembershipStoppedError('membership stopped'))
    this.links.stop(new MembershipStoppedError('membership stopped'))
    for (const w of this.joinWaiters) w.reject(new MembershipStoppedError('membership stopped during join'))
    this.joinWaiters.clear()
    await this.libp2p.unhandle(this.protocol).catch(() => {}) // the handler is removed at once; only the peer store update after it can fail (libp2p already stopped)
    await Promise.allSettled([...this.inflight])
  }

  /**
   * Joins through seeds (push-pull with each, retried). Resolves once another
   * member is known; rejects with JoinError when no seed answered within
   * `timeoutMs` (default: the core's retry window, 31 probe intervals; a
   * CLI wants a shorter one).
   */
  async join (seeds: Array<{ id: string, addrs: string[] }>, opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<void> {
    if (!this.running) throw new MembershipStoppedError('membership: start() before join()')
    const others = seeds.filter(s => s.id !== this.core.self)
    if (others.length === 0) return
    this.core.join(others)
    this.flush()
    if (this.core.joined()) return
    const timeoutMs = opts.timeoutMs ?? joinWindowMs(this.config.probeIntervalMs) + this.config.probeIntervalMs
    const signal = AbortSignal.any([AbortSignal.timeout(timeoutMs), this.shutdown.signal, ...(opts.signal !== undefined ? [opts.signal] : [])])
    await new Promise<void>((resolve, reject) => {
      const waiter: JoinWaiter = {
        seeds: others.map(s => s.id),
        resolve: () => { cleanup(); resolve() },
        reject: (err) => { cleanup(); reject(err) }
      }
      const onAbort = (): void => {
        waiter.reject(new JoinError(`join failed: no seed answered within ${timeoutMs} ms (${waiter.seeds.join(', ')})`, { cause: signal.reason }))
      }
      const cleanup = (): void => {
        this.joinWaiters.delete(waiter)
        signal.removeEventListener('abort', onAbort)
      }
      this.joinWaiters.add(waiter)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /**
   * Leaves gracefully: announces `left` (at a higher incarnation) and resolves
   * once it has been handed to some members and gossip has had
   * `propagateMs` (default three gossip intervals) to repeat it.
   */
  async leave (opts: { propagateMs?: number } = {}): Promise<void> {
    if (!this.running) return
    // The core leaves at the next incarnation; sign that one (again, should a
    // refutation raise the incarnation while the key signs).
    let signed: { inc: number, sig: string } | undefined
    for (let i = 0; i < 3 && this.signer !== undefined && signed?.inc !== this.core.incarnation() + 1; i++) {
      const inc = this.core.incarnation() + 1
      signed = { inc, sig: await signLeft(this.signer, this.core.self, inc) }
    }
    if (!this.running) return
    this.core.leave(inc => inc === signed?.inc ? signed.sig : undefined)
    const sends = this.flush()
    await Promise.allSettled(sends)
    const propagateMs = opts.propagateMs ?? 3 * this.config.gossipIntervalMs
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, propagateMs)
      this.shutdown.signal.addEventListener('abort', () => { clearTimeout(t); resolve() }, { once: true })
    })
    await Promise.allSettled([...this.inflight])
  }

  /** Announces new metadata (a new incarnation). Throws InvalidMetaError on bad or oversized metadata. */
  updateMeta (meta: MemberMeta): void {
    const parsed = MemberMetaSchema.safeParse(meta)
    if (!parsed.success) throw new InvalidMetaError(`membership: invalid metadata: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
    this.core.updateMeta(parsed.data)
    this.flush()
  }

  members (): MemberView[] { return this.core.members() }
  member (id: string): MemberView | undefined { return this.core.member(id) }
  incarnation (): number { return this.core.incarnation() }
  healthScore (): number { return this.core.healthScore() }
  stats (): MembershipStats { return { ...this.core.stats(), bytesIn: this.links.bytes.in, bytesOut: this.links.bytes.out, ...this.io } }

  /** Fault injection at run time (the lossy scenarios): drop this fraction of messages both ways. */
  setDropRate (rate: number): void {
    if (!(rate >= 0 && rate <= 1)) throw new RangeError(`membership: drop rate must be within [0, 1], got ${rate}`)
    this.dropRate = rate
  }

  // ---- I/O -------------------------------------------------------------

  /** Hands the core's output to the network and listeners; returns the sends started. */
  private flush (): Array<Promise<void>> {
    const { send, events } = this.core.drain()
    const started: Array<Promise<void>> = []
    for (const o of send) {
      const p = this.send(o)
      if (p !== undefined) started.push(p)
    }
    for (const e of events) this.dispatchEvent(new CustomEvent<MemberEvent>('member', { detail: e }))
    const inc = this.core.incarnation()
    if (inc !== this.lastIncarnationSeen) {
      this.lastIncarnationSeen = inc
      this.onIncarnation?.(inc)
      this.dispatchEvent(new CustomEvent<number>('incarnation', { detail: inc }))
    }
    if (this.joinWaiters.size > 0) {
      if (this.core.joined()) for (const w of [...this.joinWaiters]) w.resolve()
      else if (!this.core.joinPending()) for (const w of [...this.joinWaiters]) w.reject(new JoinError(`join failed: no seed answered (${w.seeds.join(', ')})`))
    }
    return started
  }

  private send (o: Outgoing): Promise<void> | undefined {
    if (!this.running) return undefined
    if (this.dropRate > 0 && Math.random() < this.dropRate) { this.io.faultDrops++; return undefined }
    if (this.inflight.size >= MAX_INFLIGHT_SENDS) { this.io.overflowDrops++; return undefined }
    const p = (async () => { await this.links.send(o.to, encodeMessage(o.msg), o.addrs) })()
      .catch((err: unknown) => { this.io.sendFailures++; this.reportError('send', o.to, err) })
      .finally(() => { this.inflight.delete(p) })
    this.inflight.add(p)
    return p
  }

  private sendTimeoutMs (): number { return Math.max(SEND_TIMEOUT_MS, this.config.probeIntervalMs) }

  private reportError (where: 'send' | 'receive', peerId: string, err: unknown): void {
    try { this.onError?.(where, peerId, err) } catch { /* a logger must not break membership */ }
  }

  private async dialDefault (peerId: string, addrs: string[], protocol: string, signal: AbortSignal): Promise<Stream> {
    const targets: Multiaddr[] = []
    for (const a of addrs) {
      try {
        const ma = multiaddr(a)
        targets.push(ma.getComponents().some(c => c.name === 'p2p') ? ma : ma.encapsulate(`/p2p/${peerId}`))
      } catch {
        // an unparsable address in gossip is skipped, not fatal
      }
    }
    return await this.libp2p.dialProtocol(targets.length > 0 ? targets : peerIdFromString(peerId), protocol, { signal })
  }

  /**
   * Inbound: frames until the sender closes the stream (or is silent past
   * its idle time). Never throws; bad input is counted and the stream aborted.
   */
  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    try {
      await this.links.read(stream, frame => {
        const msg = decodeMessage(frame)
        if (!this.running) return false
        if (this.dropRate > 0 && Math.random() < this.dropRate) { this.io.faultDrops++; return true }
        this.core.receive(from, msg)
        this.flush()
        return true
      }, { idleMs: STREAM_IDLE_MS + this.sendTimeoutMs() })
      await stream.close({ signal: AbortSignal.timeout(SEND_TIMEOUT_MS) }).catch(() => { stream.abort(new Error('close timed out')) })
    } catch (err) {
      if (this.shutdown.signal.aborted) { stream.abort(new MembershipStoppedError('membership stopped')); return }
      if (classifyEnd(err) === 'decode') this.io.decodeErrors++
      else this.io.receiveErrors++
      this.reportError('receive', from, err)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }
}
