// `/bolt/pieces/1`: pulls one blob from many peers at once and serves what
// this node holds — complete blobs and, from its first piece on, blobs it is
// still pulling. The decisions are PiecePicker's; this file does the I/O:
// streams to peers, verifying each piece against its hash before it is
// written, registry ranges for what no peer delivers, provider records.
import type { Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { transportOf } from '../../quic/transports.js'
import type { BlobStore } from './blob-store.js'
import { digestHex } from './digest.js'
import { PullAbortedError, PullFailedError } from './errors.js'
import { PeerChannel } from './peer-channel.js'
import { PieceBuffers, SPARE_IDLE_MS } from './piece-buffers.js'
import { MAX_INLINE_REPLICA_BYTES, MAX_INLINE_REPLICA_TOTAL, PIECES_PROTOCOL, type ReplicaBlob } from './piece-messages.js'
import { DEFAULT_REQUEST_TIMEOUT_MS, type PickerConfig } from './piece-picker.js'
import { DEFAULT_RECENT_PIECE_BYTES, RECENT_PIECE_TTL_MS, RecentPieces } from './recent-pieces.js'
import { PieceServer } from './piece-server.js'
import { ActivePull, MAX_PROVIDERS_PER_PULL } from './active-pull.js'
import type { ExchangeCounters, PullContext, PullOptions, PullStats } from './pull-context.js'
export type { ExchangeCounters, PullOptions, PullProgress, PullStats } from './pull-context.js'
export { MAX_PROVIDERS_PER_PULL, REVIVE_PEERS_MS } from './active-pull.js'
import { DEFAULT_PIECE_SIZE, pieceSizeFor } from './pieces.js'
import type { ProviderSource } from './providers.js'

/** 32 × 4 MiB = 128 MiB of pieces on the way at most, enough to keep several peers busy. */
export const DEFAULT_MAX_PIECE_REQUESTS = 32
/**
 * Registry range requests in flight at once across all pulls of this node.
 * More only split the same link into slower requests, and a piece that takes
 * longer to arrive is shared with peers later.
 */
export const DEFAULT_MAX_REGISTRY_REQUESTS = 4
/**
 * Piece requests in flight to one peer at once across all pulls of this
 * node. Two keep a link busy (one piece on the wire, one being read from
 * disk); more only wait in the peer's queue, where a piece that takes
 * seconds to come makes every deadline and claim in the picker late.
 */
export const DEFAULT_MAX_REQUESTS_PER_PEER = 4
/** Concurrent piece uploads per node. */
export const DEFAULT_UPLOAD_SLOTS = 8
/** A peer reported dead is not used as a source for this long unless marked alive again. */
export const DEAD_PEER_MS = 60_000
/** A replicate request waits this long for the peer to pull and pin everything. */
export const REPLICATE_TIMEOUT_MS = 10 * 60_000

export type OpenStream = (peerId: string, protocol: string, signal: AbortSignal) => Promise<Stream>

export interface PieceExchangeInit {
  libp2p: Pick<Libp2p, 'peerId' | 'handle' | 'unhandle' | 'dialProtocol' | 'getConnections'>
  store: BlobStore
  providers?: ProviderSource
  uploadSlots?: number
  pieceSize?: number
  openStream?: OpenStream
  /** Picker tuning (deadlines, pipelining); defaults are the picker's. */
  picker?: Partial<Omit<PickerConfig, 'pieceCount' | 'self' | 'registry'>>
  onReplicate?: (from: string, owner: string, blobs: ReplicaBlob[], signal: AbortSignal) => Promise<void>
  /** Piece requests in flight at once across all pulls of this node (bounds memory: each may bring a piece). */
  maxPieceRequests?: number
  /** Registry range requests in flight at once across all pulls of this node. */
  maxRegistryRequests?: number
  /** Piece requests in flight to one peer at once across all pulls of this node. */
  maxRequestsPerPeer?: number
  /** Memory for verified pieces kept to serve again (see recent-pieces.ts); 0 keeps none. Default 32 MiB, 0 when this node uploads nothing. */
  recentPieceBytes?: number
  /** Serve corrupted pieces: only for tests of the lying-peer path. */
  corruptPieces?: boolean
}

export class PieceExchange {
  private readonly init: PieceExchangeInit
  private readonly selfId: string
  private readonly context: PullContext
  readonly pieceSize: number
  private readonly server: PieceServer
  private readonly active = new Map<string, Promise<PullStats>>()
  /** Size and piece size of blobs being pulled, known before their partial file exists. */
  private readonly pullingShape = new Map<string, { size: number, pieceSize: number }>()
  private readonly activePulls = new Set<ActivePull>()
  private readonly dead = new Map<string, number>()
  private readonly background = new Set<Promise<unknown>>()
  private readonly shutdown = new AbortController()
  private readonly provided = new Set<string>()
  readonly counters: ExchangeCounters = { bytesFromPeers: 0, bytesFromRegistry: 0, bytesServed: 0 }
  readonly bannedPeers = new Set<string>()
  /** Verified pieces kept in memory to serve again. */
  readonly recent: RecentPieces
  /** Buffers for pieces read from disk or the network: this exchange's own pool. */
  readonly buffers = new PieceBuffers()
  private expireTimer: NodeJS.Timeout | undefined
  private started = false
  private pieceRequestsInFlight = 0
  private readonly maxPieceRequests: number
  private registryRequestsInFlight = 0
  private readonly perPeerInFlight = new Map<string, number>()
  private replicateHandler: PieceExchangeInit['onReplicate']
  /** Reads of small blobs for replicate requests under way, by digest (see readInline). */
  private readonly inlineReads = new Map<string, Promise<Uint8Array | undefined>>()
  private readonly onAdded = (digest: string): void => { this.announce(digest) }
  private readonly onRemoved = (digest: string): void => { this.recent.drop(digest); this.withdraw(digest) }

  constructor (init: PieceExchangeInit) {
    this.init = { ...init }
    this.replicateHandler = init.onReplicate
    this.maxPieceRequests = init.maxPieceRequests ?? DEFAULT_MAX_PIECE_REQUESTS
    this.selfId = init.libp2p.peerId.toString()
    this.context = this.pullContext()
    this.pieceSize = init.pieceSize ?? init.store.pieceSize ?? DEFAULT_PIECE_SIZE
    const uploadSlots = init.uploadSlots ?? DEFAULT_UPLOAD_SLOTS
    this.recent = new RecentPieces(init.recentPieceBytes ?? (uploadSlots === 0 ? 0 : DEFAULT_RECENT_PIECE_BYTES))
    this.server = new PieceServer({
      store: init.store,
      pieceSizes: [this.pieceSize],
      uploadSlots,
      recent: this.recent,
      buffers: this.buffers,
      isPulling: (d) => this.active.has(d),
      pullingShape: (d) => this.pullingShape.get(d),
      registryFetching: (d) => {
        for (const p of this.activePulls) if (p.digest === d) return { claimed: p.registryFetching(), now: p.registryFetchingNow() }
        return undefined
      },
      onReplicate: async (from, owner, blobs, signal) => {
        const h = this.replicateHandler
        if (h === undefined) throw new Error('this node does not accept replicas')
        await h(from, owner, blobs, signal)
      },
      onServed: (n) => { this.counters.bytesServed += n },
      corruptPieces: init.corruptPieces
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.init.libp2p.handle(PIECES_PROTOCOL, (stream, connection) => {
      // Noise seals what goes over every transport but QUIC (TCP, WebSockets, relays).
      void this.server.serve(stream, connection.remotePeer.toString(), transportOf(connection.remoteAddr) !== 'quic')
    }, { maxInboundStreams: 256, maxOutboundStreams: 256 })
    this.init.store.events.on('added', this.onAdded)
    this.init.store.events.on('removed', this.onRemoved)
    this.expireTimer = setInterval(() => {
      this.recent.expire()
      this.buffers.trim(SPARE_IDLE_MS)
    }, RECENT_PIECE_TTL_MS / 3)
    this.expireTimer.unref()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort(new PullAbortedError('piece exchange stopping'))
    clearInterval(this.expireTimer)
    this.recent.expire(0)
    this.buffers.trim()
    this.init.store.events.off('added', this.onAdded)
    this.init.store.events.off('removed', this.onRemoved)
    await this.init.libp2p.unhandle(PIECES_PROTOCOL).catch(() => {}) // the handler is removed at once; only the peer store update after it can fail (libp2p already stopped)
    this.server.stop()
    await Promise.allSettled([...this.active.values()])
    await Promise.allSettled([...this.background])
  }

  /** Members reported dead by gossip stop being sources at once. */
  markDead (peerId: string): void {
    this.dead.set(peerId, Date.now() + DEAD_PEER_MS)
    for (const p of this.activePulls) p.peerGone(peerId)
  }

  markAlive (peerId: string): void {
    this.dead.delete(peerId)
  }

  private isDead (peerId: string): boolean {
    const until = this.dead.get(peerId)
    if (until === undefined) return false
    if (Date.now() > until) { this.dead.delete(peerId); return false }
    return true
  }

  /** Announces `digest` to the provider source (once per digest, in the background). */
  announce (digest: string): void {
    const providers = this.init.providers
    if (providers === undefined || this.provided.has(digest) || !this.started) return
    this.provided.add(digest)
    this.track(providers.provide(digest, { signal: this.shutdown.signal }).catch(() => { this.provided.delete(digest) }))
  }

  /** Stops announcing every blob (the node leaves the cluster); records already in the DHT expire with their TTL. */
  async withdrawAll (): Promise<void> {
    const w = this.init.providers?.withdraw
    const all = [...this.provided]
    this.provided.clear()
    if (w !== undefined) await Promise.allSettled(all.map(async d => await w(d)))
  }

  private withdraw (digest: string): void {
    this.provided.delete(digest)
    const w = this.init.providers?.withdraw
    if (w !== undefined) this.track(w(digest).catch(() => {})) // a record not withdrawn expires with its TTL; the blob is gone either way
  }

  private track (p: Promise<unknown>): void {
    this.background.add(p)
    void p.finally(() => this.background.delete(p))
  }

  /**
   * Pulls `digest` into the store: pieces from peers (verified), the
   * registry for what no peer delivers. Resolves once the blob is verified
   * and visible. Concurrent pulls of one digest share the work.
   */
  async pull (digest: string, opts: PullOptions): Promise<PullStats> {
    digestHex(digest)
    if (this.init.store.hasSync(digest)) return { bytesFromPeers: 0, bytesFromRegistry: 0, bannedPeers: [] }
    const existing = this.active.get(digest)
    if (existing !== undefined) return await existing
    // Say "pulling" at once (before any await), so peers starting the same
    // pull count this node when they split the registry's pieces.
    this.pullingShape.set(digest, { size: opts.size, pieceSize: pieceSizeFor(opts.size, this.pieceSize) })
    const p = this.doPull(digest, opts)
    this.active.set(digest, p)
    try {
      return await p
    } finally {
      this.active.delete(digest)
      this.pullingShape.delete(digest)
    }
  }

  private async doPull (digest: string, opts: PullOptions): Promise<PullStats> {
    const store = this.init.store
    if (opts.size === 0) {
      await store.put(new Uint8Array(0), digest, { size: 0 })
      return { bytesFromPeers: 0, bytesFromRegistry: 0, bannedPeers: [] }
    }
    const pieceSize = pieceSizeFor(opts.size, this.pieceSize)
    const partial = await store.openPartial(digest, opts.size, pieceSize)
    const signal = AbortSignal.any(opts.signal !== undefined ? [opts.signal, this.shutdown.signal] : [this.shutdown.signal])
    let registryOnly = false
    for (let attempt = 0; ; attempt++) {
      const pull = new ActivePull(this.context, digest, partial, opts, signal, registryOnly)
      this.activePulls.add(pull)
      try {
        const stats = await pull.run()
        for (const b of stats.bannedPeers) this.bannedPeers.add(b)
        return stats
      } catch (err) {
        // The assembled blob failed its digest: some piece was wrong under a
        // hash no one could check (a lying partial holder). Its pieces were
        // dropped from the partial; drop those kept in memory too. Start over
        // from the registry alone, once.
        if ((err as Error).name === 'DigestMismatchError') this.recent.drop(digest)
        if ((err as Error).name === 'DigestMismatchError' && attempt === 0 && opts.registry !== undefined) {
          registryOnly = true
          continue
        }
        throw err
      } finally {
        this.activePulls.delete(pull)
      }
    }
  }

  /** Piece requests this node may still start (node-wide cap across pulls). */
  requestBudget (): number {
    return Math.max(0, this.maxPieceRequests - this.pieceRequestsInFlight)
  }

  /** Registry range requests this node may still start (node-wide cap across pulls). */
  registryBudget (): number {
    return Math.max(0, (this.init.maxRegistryRequests ?? DEFAULT_MAX_REGISTRY_REQUESTS) - this.registryRequestsInFlight)
  }

  /** Piece requests this node may still send to `peer` (node-wide cap across pulls). */
  peerRoom (peer: string): number {
    return Math.max(0, (this.init.maxRequestsPerPeer ?? DEFAULT_MAX_REQUESTS_PER_PEER) - (this.perPeerInFlight.get(peer) ?? 0))
  }

  /** Who answers a peer's request to hold replicas (objects). */
  setReplicateHandler (h: PieceExchangeInit['onReplicate']): void {
    this.replicateHandler = h
  }

  /**
   * Asks `peer` to pull `blobs` (from this node or anyone) and pin them under
   * `owner`; resolves once the peer holds them, rejects with its reason.
   * Small blobs this node holds go along with the request (see withInlineBytes).
   */
  async requestReplicate (peer: string, owner: string, blobs: Array<{ digest: string, size: number }>, opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<void> {
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(opts.timeoutMs ?? REPLICATE_TIMEOUT_MS), ...(opts.signal !== undefined ? [opts.signal] : [])])
    const [stream, sent] = await Promise.all([this.openStream(peer, signal), this.withInlineBytes(blobs)])
    const ch = new PeerChannel(peer, stream, opts.timeoutMs ?? REPLICATE_TIMEOUT_MS, this.buffers)
    try {
      const { res } = await ch.request({ t: 'replicate?', owner, blobs: sent }, signal)
      if (res.t !== 'replicated') throw new PullFailedError(`${peer} answered ${res.t} to a replicate request`)
      if (!res.ok) throw new PullFailedError(`${peer} could not take replicas: ${res.error ?? 'no reason given'}`)
    } finally {
      ch.close()
    }
  }

  /**
   * `blobs`, the small ones this node holds with their bytes: an object's
   * manifest and its small chunks (an S3 PUT of a few KiB) then cost the peer
   * one request, not a pull of each (a `have?` round trip to every candidate,
   * then the piece). Larger blobs, and any no longer here, are pulled as before.
   */
  private async withInlineBytes (blobs: Array<{ digest: string, size: number }>): Promise<ReplicaBlob[]> {
    let room = MAX_INLINE_REPLICA_TOTAL
    return await Promise.all(blobs.map(async b => {
      if (b.size === 0 || b.size > MAX_INLINE_REPLICA_BYTES || b.size > room || !this.init.store.hasSync(b.digest)) return { digest: b.digest, size: b.size }
      room -= b.size
      const data = await this.readInline(b.digest)
      return data !== undefined && data.length === b.size ? { digest: b.digest, size: b.size, data } : { digest: b.digest, size: b.size }
    }))
  }

  /**
   * A small blob's bytes for replicate requests. The K peers of one PUT are
   * asked at once, so requests under way share one read (the bytes are only
   * encoded into each request, never changed); nothing is kept after it.
   */
  private async readInline (digest: string): Promise<Uint8Array | undefined> {
    let read = this.inlineReads.get(digest)
    if (read === undefined) {
      // Evicted since, or unreadable: the peer pulls it instead, and says so if that fails.
      read = this.init.store.readAll(digest).catch(() => undefined).finally(() => { this.inlineReads.delete(digest) })
      this.inlineReads.set(digest, read)
    }
    return await read
  }

  /** The size of `digest` as the first of `candidates` holding it reports; undefined if none does. */
  async probeSize (digest: string, candidates: string[], signal?: AbortSignal): Promise<number | undefined> {
    const asked = new Set<string>()
    const fromCandidates = await this.probeSizeFrom(digest, candidates, asked, signal)
    if (fromCandidates !== undefined || this.init.providers === undefined) return fromCandidates
    // Then whoever the provider source names (the DHT holds object manifests too).
    const found: string[] = []
    try {
      for await (const p of this.init.providers.findProviders(digest, { signal: AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(DEFAULT_REQUEST_TIMEOUT_MS), ...(signal !== undefined ? [signal] : [])]) })) {
        if (!asked.has(p)) found.push(p)
        if (found.length >= MAX_PROVIDERS_PER_PULL) break
      }
    } catch { /* lookup ended */ }
    return await this.probeSizeFrom(digest, found, asked, signal)
  }

  /** Whether `peer` says it holds all of `digest` now (false when it does not answer). */
  async peerHas (peer: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    return await this.probeSizeFrom(digest, [peer], new Set(), signal) !== undefined
  }

  private async probeSizeFrom (digest: string, candidates: string[], asked: Set<string>, signal?: AbortSignal): Promise<number | undefined> {
    for (const peer of candidates) {
      asked.add(peer)
      if (peer === this.self || this.isDead(peer) || this.bannedPeers.has(peer)) continue
      const s = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(DEFAULT_REQUEST_TIMEOUT_MS), ...(signal !== undefined ? [signal] : [])])
      let ch: PeerChannel | undefined
      try {
        ch = new PeerChannel(peer, await this.openStream(peer, s), DEFAULT_REQUEST_TIMEOUT_MS, this.buffers)
        const { res } = await ch.request({ t: 'have?', digest, pieceSize: this.pieceSize }, s)
        if (res.t === 'have' && res.complete) return res.size
      } catch {
        // try the next one
      } finally {
        ch?.close()
      }
    }
    return undefined
  }

  /** A stream to `peer` for this protocol, preferring an open TCP connection for bulk. */
  async openStream (peer: string, signal: AbortSignal): Promise<Stream> {
    if (this.init.openStream !== undefined) return await this.init.openStream(peer, PIECES_PROTOCOL, signal)
    const pid = peerIdFromString(peer)
    const conns = this.init.libp2p.getConnections(pid).filter(c => c.status === 'open')
    const conn = conns.find(c => transportOf(c.remoteAddr) === 'tcp') ?? conns[0]
    if (conn !== undefined) return await conn.newStream(PIECES_PROTOCOL, { signal })
    return await this.init.libp2p.dialProtocol(pid, PIECES_PROTOCOL, { signal })
  }

  /** This node's peer id. */
  get self (): string { return this.selfId }

  /** What a pull of this exchange may use (see pull-context.ts). */
  private pullContext (): PullContext {
    return {
      self: this.selfId,
      buffers: this.buffers,
      providers: this.init.providers,
      picker: this.init.picker,
      counters: this.counters,
      isDead: (p) => this.isDead(p),
      isBanned: (p) => this.bannedPeers.has(p),
      ban: (p) => { this.bannedPeers.add(p) },
      announce: (d) => { this.announce(d) },
      keepRecent: (d, size, i, piece) => { this.recent.put(d, size, i, piece) },
      savePieceManifest: async (m) => { await this.init.store.savePieceManifest(m) },
      openStream: async (p, s) => await this.openStream(p, s),
      requestBudget: () => this.requestBudget(),
      registryBudget: () => this.registryBudget(),
      peerRoom: (p) => this.peerRoom(p),
      registryRequestStarted: () => { this.registryRequestsInFlight++ },
      registryRequestEnded: () => { this.registryRequestsInFlight-- },
      pieceRequestStarted: (p) => {
        this.pieceRequestsInFlight++
        this.perPeerInFlight.set(p, (this.perPeerInFlight.get(p) ?? 0) + 1)
      },
      pieceRequestEnded: (p) => {
        this.pieceRequestsInFlight--
        const n = (this.perPeerInFlight.get(p) ?? 1) - 1
        if (n > 0) this.perPeerInFlight.set(p, n)
        else this.perPeerInFlight.delete(p)
      }
    }
  }
}
