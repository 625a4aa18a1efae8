// `/bolt/pieces/1`: pulls one blob from many peers at once and serves what
// this node holds — complete blobs and, from its first piece on, blobs it is
// still pulling. The decisions are PiecePicker's; this file does the I/O:
// streams to peers, verifying each piece against its hash before it is
// written, registry ranges for what no peer delivers, provider records.
import type { Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { transportOf } from '../../quic/transports.js'
import { Bitfield } from './bitfield.js'
import type { BlobStore } from './blob-store.js'
import { digestHex } from './digest.js'
import { PullAbortedError, PullFailedError } from './errors.js'
import type { PartialBlob } from './partial-blob.js'
import { PeerChannel } from './peer-channel.js'
import { MAX_CONTROL_FRAME, PIECES_PROTOCOL } from './piece-messages.js'
import { PiecePicker, DEFAULT_MAX_INFLIGHT_PER_PEER, DEFAULT_REQUEST_TIMEOUT_MS, type PickerAction, type PickerConfig } from './piece-picker.js'
import { PieceServer } from './piece-server.js'
import { bytesEqual, DEFAULT_PIECE_SIZE, HASH_BYTES, hashPieceAsync, pieceCount, pieceRange, pieceSizeFor } from './pieces.js'
import type { ProviderSource } from './providers.js'

/** 32 × 4 MiB = 128 MiB of pieces on the way at most, enough to keep several peers busy. */
export const DEFAULT_MAX_PIECE_REQUESTS = 32
/** Concurrent piece uploads per node. */
export const DEFAULT_UPLOAD_SLOTS = 8
/** Providers taken from a DHT lookup per pull. */
export const MAX_PROVIDERS_PER_PULL = 16
/** A peer reported dead is not used as a source for this long unless marked alive again. */
export const DEAD_PEER_MS = 60_000
/** A replicate request waits this long for the peer to pull and pin everything. */
export const REPLICATE_TIMEOUT_MS = 10 * 60_000
/** How often peers dropped from a pull (timeout, broken stream) are tried again. */
export const REVIVE_PEERS_MS = 2_000
/** Bytes around a piece on the wire: its header frame and length prefixes. */
const FRAME_OVERHEAD = 4096
/** The pull loop looks at the clock at least this often (timeouts, re-queries). */
const LOOP_INTERVAL_MS = 20

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
  onReplicate?: (from: string, owner: string, blobs: Array<{ digest: string, size: number }>, signal: AbortSignal) => Promise<void>
  /** Piece requests in flight at once across all pulls of this node (bounds memory: each may bring a piece). */
  maxPieceRequests?: number
  /** Serve corrupted pieces: only for tests of the lying-peer path. */
  corruptPieces?: boolean
}

export interface PullProgress {
  digest: string
  size: number
  piecesDone: number
  pieceCount: number
  bytesFromPeers: number
  bytesFromRegistry: number
}

export interface PullOptions {
  size: number
  /** Peers to ask directly (e.g. live cluster members), besides the provider source. */
  candidates?: string[]
  /** Fetch a byte range from the registry; absent = peers only. */
  registry?: (range: { start: number, length: number }, signal: AbortSignal) => Promise<Uint8Array>
  signal?: AbortSignal
  onProgress?: (p: PullProgress) => void
}

export interface PullStats {
  bytesFromPeers: number
  bytesFromRegistry: number
  bannedPeers: string[]
}

export interface ExchangeCounters {
  bytesFromPeers: number
  bytesFromRegistry: number
  bytesServed: number
}

export class PieceExchange {
  private readonly init: PieceExchangeInit
  private readonly self: string
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
  private started = false
  private pieceRequestsInFlight = 0
  private readonly maxPieceRequests: number
  private replicateHandler: PieceExchangeInit['onReplicate']
  private readonly onAdded = (digest: string): void => { this.announce(digest) }
  private readonly onRemoved = (digest: string): void => { this.withdraw(digest) }

  constructor (init: PieceExchangeInit) {
    this.init = { ...init }
    this.replicateHandler = init.onReplicate
    this.maxPieceRequests = init.maxPieceRequests ?? DEFAULT_MAX_PIECE_REQUESTS
    this.self = init.libp2p.peerId.toString()
    this.pieceSize = init.pieceSize ?? init.store.pieceSize ?? DEFAULT_PIECE_SIZE
    this.server = new PieceServer({
      store: init.store,
      uploadSlots: init.uploadSlots ?? DEFAULT_UPLOAD_SLOTS,
      isPulling: (d) => this.active.has(d),
      pullingShape: (d) => this.pullingShape.get(d),
      registryFetching: (d) => {
        for (const p of this.activePulls) if (p.digest === d) return p.registryFetching()
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
      void this.server.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: 256, maxOutboundStreams: 256 })
    this.init.store.events.on('added', this.onAdded)
    this.init.store.events.on('removed', this.onRemoved)
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.shutdown.abort(new PullAbortedError('piece exchange stopping'))
    this.init.store.events.off('added', this.onAdded)
    this.init.store.events.off('removed', this.onRemoved)
    await this.init.libp2p.unhandle(PIECES_PROTOCOL).catch(() => {})
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
    if (w !== undefined) this.track(w(digest).catch(() => {}))
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
      const pull = new ActivePull(this, digest, partial, opts, signal, registryOnly)
      this.activePulls.add(pull)
      try {
        const stats = await pull.run()
        for (const b of stats.bannedPeers) this.bannedPeers.add(b)
        return stats
      } catch (err) {
        // The assembled blob failed its digest: some piece was wrong under a
        // hash no one could check (a lying partial holder). Start over from
        // the registry alone, once.
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

  /** @internal */
  pieceRequestStarted (): void { this.pieceRequestsInFlight++ }
  /** @internal */
  pieceRequestEnded (): void { this.pieceRequestsInFlight-- }

  /** Who answers a peer's request to hold replicas (objects). */
  setReplicateHandler (h: PieceExchangeInit['onReplicate']): void {
    this.replicateHandler = h
  }

  /**
   * Asks `peer` to pull `blobs` (from this node or anyone) and pin them under
   * `owner`; resolves once the peer holds them, rejects with its reason.
   */
  async requestReplicate (peer: string, owner: string, blobs: Array<{ digest: string, size: number }>, opts: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<void> {
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(opts.timeoutMs ?? REPLICATE_TIMEOUT_MS), ...(opts.signal !== undefined ? [opts.signal] : [])])
    const ch = new PeerChannel(peer, await this.openStream(peer, signal), opts.timeoutMs ?? REPLICATE_TIMEOUT_MS, MAX_CONTROL_FRAME)
    try {
      const { res } = await ch.request({ t: 'replicate?', owner, blobs }, signal)
      if (res.t !== 'replicated') throw new PullFailedError(`${peer} answered ${res.t} to a replicate request`)
      if (!res.ok) throw new PullFailedError(`${peer} could not take replicas: ${res.error ?? 'no reason given'}`)
    } finally {
      ch.close()
    }
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

  private async probeSizeFrom (digest: string, candidates: string[], asked: Set<string>, signal?: AbortSignal): Promise<number | undefined> {
    for (const peer of candidates) {
      asked.add(peer)
      if (peer === this.self || this.isDead(peer) || this.bannedPeers.has(peer)) continue
      const s = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(DEFAULT_REQUEST_TIMEOUT_MS), ...(signal !== undefined ? [signal] : [])])
      let ch: PeerChannel | undefined
      try {
        ch = new PeerChannel(peer, await this.openStream(peer, s), DEFAULT_REQUEST_TIMEOUT_MS, MAX_CONTROL_FRAME)
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

  /** @internal */
  get internals (): { self: string, store: BlobStore, providers: ProviderSource | undefined, picker: PieceExchangeInit['picker'], isDead: (p: string) => boolean, counters: ExchangeCounters } {
    return { self: this.self, store: this.init.store, providers: this.init.providers, picker: this.init.picker, isDead: (p) => this.isDead(p), counters: this.counters }
  }
}

/** One pull of one blob: the picker plus the I/O it asks for. */
class ActivePull {
  private readonly picker: PiecePicker
  private readonly channels = new Map<string, Promise<PeerChannel>>()
  private readonly peerHashes = new Map<string, Uint8Array>()
  private readonly known = new Set<string>()
  private lastRevive = Date.now()
  private trusted: Uint8Array | undefined
  private readonly ops = new Set<Promise<void>>()
  private wake: (() => void) | undefined
  private bytesFromPeers = 0
  private bytesFromRegistry = 0
  private readonly count: number
  private readonly local = new AbortController()
  private readonly signal: AbortSignal

  constructor (
    private readonly ex: PieceExchange,
    readonly digest: string,
    private readonly partial: PartialBlob,
    private readonly opts: PullOptions,
    signal: AbortSignal,
    private readonly registryOnly: boolean
  ) {
    this.count = pieceCount(partial.size, partial.pieceSize)
    this.signal = AbortSignal.any([signal, this.local.signal])
    const { self, picker } = ex.internals
    this.picker = new PiecePicker({ ...picker, pieceCount: this.count, self, registry: opts.registry !== undefined }, partial.have, Date.now())
    if (partial.have.count() > 0) ex.announce(digest)
  }

  registryFetching (): Uint8Array {
    return this.picker.registryFetching().bytes
  }

  peerGone (peer: string): void {
    this.picker.peerGone(peer)
    this.closeChannel(peer)
    this.poke()
  }

  private addPeer (peer: string): void {
    const { self, isDead } = this.ex.internals
    if (this.registryOnly || peer === self || isDead(peer) || this.ex.bannedPeers.has(peer)) return
    this.known.add(peer)
    this.picker.addPeer(peer)
    this.poke()
  }

  /** Peers dropped for a timeout or a broken stream get another chance (banned and dead ones do not). */
  private revive (now: number): void {
    if (now - this.lastRevive < REVIVE_PEERS_MS) return
    this.lastRevive = now
    const live = new Set(this.picker.livePeers())
    for (const p of this.known) if (!live.has(p) && !this.picker.isBanned(p)) this.addPeer(p)
  }

  private poke (): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  async run (): Promise<PullStats> {
    for (const c of this.opts.candidates ?? []) this.addPeer(c)
    this.findProviders()
    try {
      for (;;) {
        if (this.signal.aborted) throw new PullAbortedError(`pull of ${this.digest} aborted`, { cause: this.signal.reason })
        this.revive(Date.now())
        const actions = this.picker.tick(Date.now(), this.ex.requestBudget())
        for (const a of actions) {
          if (a.type === 'done') {
            // Endgame duplicates still in flight are not needed any more.
            this.local.abort(new PullAbortedError('pull complete'))
            this.closeAllChannels()
            await this.settle()
            await this.partial.complete()
            await this.saveManifest()
            return { bytesFromPeers: this.bytesFromPeers, bytesFromRegistry: this.bytesFromRegistry, bannedPeers: this.picker.bannedPeers() }
          }
          if (a.type === 'fail') throw new PullFailedError(`pull of ${this.digest} failed: ${a.reason}`)
          this.dispatch(a)
        }
        await new Promise<void>(resolve => {
          const timer = setTimeout(() => { this.wake = undefined; resolve() }, LOOP_INTERVAL_MS)
          this.wake = () => { clearTimeout(timer); resolve() }
        })
      }
    } finally {
      this.local.abort(new PullAbortedError('pull finished'))
      this.closeAllChannels()
      await this.settle()
    }
  }

  private async saveManifest (): Promise<void> {
    // Every piece hash is known now: keep the manifest so serving does not re-read the blob.
    try {
      await this.ex.internals.store.savePieceManifest({ digest: this.digest, size: this.partial.size, pieceSize: this.partial.pieceSize, hashes: this.partial.hashes })
    } catch { /* derived again on demand */ }
  }

  private async settle (): Promise<void> {
    while (this.ops.size > 0) await Promise.allSettled([...this.ops])
  }

  private op (fn: () => Promise<void>): void {
    const p = fn().catch(() => {}).finally(() => { this.ops.delete(p); this.poke() })
    this.ops.add(p)
  }

  private findProviders (): void {
    const providers = this.ex.internals.providers
    if (providers === undefined || this.registryOnly) return
    this.op(async () => {
      let n = 0
      for await (const peer of providers.findProviders(this.digest, { signal: this.signal })) {
        this.addPeer(peer)
        if (++n >= MAX_PROVIDERS_PER_PULL) break
      }
    })
  }

  /**
   * One stream per peer for bitfield queries and one for pieces, so a query
   * never waits behind megabytes of pipelined pieces (head-of-line blocking
   * turned slow peers into "timed out" peers).
   */
  private channel (peer: string, kind: 'control' | 'pieces'): Promise<PeerChannel> {
    const key = `${kind}|${peer}`
    let c = this.channels.get(key)
    if (c === undefined) {
      const timeout = this.ex.internals.picker?.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
      const inflight = this.ex.internals.picker?.maxInflightPerPeer ?? DEFAULT_MAX_INFLIGHT_PER_PEER
      const maxBuffer = kind === 'control' ? 2 * MAX_CONTROL_FRAME : (this.partial.pieceSize + FRAME_OVERHEAD) * (inflight + 1) + MAX_CONTROL_FRAME
      c = this.ex.openStream(peer, AbortSignal.any([this.signal, AbortSignal.timeout(timeout)])).then(s => new PeerChannel(peer, s, timeout, maxBuffer))
      c.catch(() => {})
      this.channels.set(key, c)
    }
    return c
  }

  private closeChannel (peer: string): void {
    for (const key of [`control|${peer}`, `pieces|${peer}`]) {
      const c = this.channels.get(key)
      if (c === undefined) continue
      this.channels.delete(key)
      c.then(ch => ch.abort(), () => {})
    }
  }

  private closeAllChannels (): void {
    for (const [key, c] of [...this.channels]) {
      this.channels.delete(key)
      c.then(ch => ch.abort(), () => {})
    }
  }

  private dispatch (a: Exclude<PickerAction, { type: 'done' } | { type: 'fail' }>): void {
    switch (a.type) {
      case 'query': return this.op(async () => await this.query(a.peer))
      case 'request': return this.op(async () => await this.fetchFromPeer(a.peer, a.index))
      case 'registry': return this.op(async () => await this.fetchFromRegistry(a.index))
      case 'drop': return this.closeChannel(a.peer)
      case 'ban': {
        this.ex.bannedPeers.add(a.peer)
        return this.closeChannel(a.peer)
      }
    }
  }

  private async query (peer: string): Promise<void> {
    try {
      const ch = await this.channel(peer, 'control')
      const { res } = await ch.request({ t: 'have?', digest: this.digest, pieceSize: this.partial.pieceSize }, this.signal)
      if (res.t === 'none') { this.picker.peerHave(peer, null, false); return }
      if (res.t !== 'have' || res.digest !== this.digest || res.size !== this.partial.size || res.pieceSize !== this.partial.pieceSize ||
          res.bitfield.length !== Math.ceil(this.count / 8) || res.hashes.length !== this.count * HASH_BYTES) {
        this.picker.peerHave(peer, null, false)
        return
      }
      const bf = new Bitfield(this.count, res.bitfield)
      // A bit without a hash cannot be checked: treat it as not held.
      for (let i = 0; i < this.count; i++) if (bf.get(i) && res.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES).every(b => b === 0)) bf.set(i, false)
      this.peerHashes.set(peer, res.hashes)
      if (res.complete && this.trusted === undefined) {
        this.trusted = new Uint8Array(res.hashes)
        this.partial.adoptManifest({ digest: this.digest, size: this.partial.size, pieceSize: this.partial.pieceSize, hashes: this.trusted })
      }
      const fetching = res.fetching !== undefined && res.fetching.length === bf.bytes.length ? new Bitfield(this.count, res.fetching) : undefined
      this.picker.peerHave(peer, bf, res.pulling, fetching)
    } catch {
      this.picker.queryFailed(peer)
      this.closeChannel(peer)
    }
  }

  private expectedHash (peer: string | undefined, index: number): Uint8Array | undefined {
    const src = this.trusted ?? (peer !== undefined ? this.peerHashes.get(peer) : undefined)
    return src?.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES)
  }

  private async fetchFromPeer (peer: string, index: number): Promise<void> {
    this.ex.pieceRequestStarted()
    try {
      await this.fetchFromPeerCounted(peer, index)
    } finally {
      this.ex.pieceRequestEnded()
    }
  }

  private async fetchFromPeerCounted (peer: string, index: number): Promise<void> {
    let data: Uint8Array
    try {
      const ch = await this.channel(peer, 'pieces')
      const r = await ch.request({ t: 'piece?', digest: this.digest, pieceSize: this.partial.pieceSize, index }, this.signal)
      if (r.res.t === 'err' && (r.res.code === 'missing' || r.res.code === 'busy')) {
        this.picker.missing(peer, index)
        return
      }
      if (r.res.t !== 'piece' || r.res.index !== index || r.data === undefined) throw new Error(`unexpected answer ${r.res.t}`)
      data = r.data
    } catch {
      this.picker.failed(peer, index, Date.now())
      this.closeChannel(peer)
      return
    }
    this.bytesFromPeers += data.length
    this.ex.internals.counters.bytesFromPeers += data.length
    const expected = this.expectedHash(peer, index)
    const hash = await hashPieceAsync(data)
    const { length } = pieceRange(this.partial.size, this.partial.pieceSize, index)
    const ok = expected !== undefined && data.length === length && bytesEqual(hash, expected)
    if (ok && !this.partial.have.get(index)) {
      try {
        await this.partial.writePiece(index, data, hash)
      } catch {
        this.picker.failed(peer, index, Date.now())
        return
      }
      this.progress()
      this.ex.announce(this.digest)
    }
    for (const a of this.picker.received(peer, index, ok, Date.now())) this.dispatch(a as Exclude<PickerAction, { type: 'done' } | { type: 'fail' }>)
  }

  private async fetchFromRegistry (index: number): Promise<void> {
    const registry = this.opts.registry
    if (registry === undefined) return
    const range = pieceRange(this.partial.size, this.partial.pieceSize, index)
    let data: Uint8Array
    try {
      data = await registry(range, this.signal)
    } catch {
      this.picker.failed('registry', index, Date.now())
      return
    }
    this.bytesFromRegistry += data.length
    this.ex.internals.counters.bytesFromRegistry += data.length
    const hash = await hashPieceAsync(data)
    const expected = this.trusted?.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES)
    const ok = data.length === range.length && (expected === undefined || bytesEqual(hash, expected))
    if (ok && !this.partial.have.get(index)) {
      try {
        await this.partial.writePiece(index, data, hash)
      } catch {
        this.picker.failed('registry', index, Date.now())
        return
      }
      this.progress()
      this.ex.announce(this.digest)
    }
    this.picker.received('registry', index, ok, Date.now())
  }

  private progress (): void {
    this.opts.onProgress?.({
      digest: this.digest,
      size: this.partial.size,
      piecesDone: this.partial.have.count(),
      pieceCount: this.count,
      bytesFromPeers: this.bytesFromPeers,
      bytesFromRegistry: this.bytesFromRegistry
    })
  }
}
