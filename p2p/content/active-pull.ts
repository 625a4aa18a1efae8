// One pull of one blob in progress: a PiecePicker and the I/O it asks for —
// bitfield queries and pipelined piece requests on streams to peers, every
// piece checked against its hash before it is written, registry ranges for
// what no peer delivers, peers dropped and tried again.
import { setTimeout as delay } from 'node:timers/promises'
import { Bitfield } from './bitfield.js'
import { PullAbortedError, PullFailedError } from './errors.js'
import type { PartialBlob } from './partial-blob.js'
import { PeerChannel } from './peer-channel.js'
import type { PullContext, PullOptions, PullStats } from './pull-context.js'
import { PiecePicker, DEFAULT_QUERY_INTERVAL_MS, DEFAULT_REQUEST_TIMEOUT_MS, MAX_QUERY_BACKOFF, type PickerAction } from './piece-picker.js'
import { MAX_HAVE_WAIT_MS } from './piece-messages.js'
import { PieceBuffer } from './piece-buffers.js'
import { HASH_BYTES, pieceCount, pieceRange } from './pieces.js'
import { PullTrace } from './pull-trace.js'

/** Providers taken from a DHT lookup per pull. */
export const MAX_PROVIDERS_PER_PULL = 16
/** With candidates given, the DHT is asked for providers only if none of them offers a missing piece by then. */
export const PROVIDER_LOOKUP_DELAY_MS = 3_000
/** How often peers dropped from a pull (timeout, broken stream) are tried again. */
export const REVIVE_PEERS_MS = 2_000
/**
 * Piece streams per peer. A peer answers the requests on one stream one
 * after another (read the piece from disk, then send it), so with one stream
 * its link idles during every disk read; two keep it busy.
 */
export const PIECE_STREAMS_PER_PEER = 2
/** The pull loop looks at the clock at least this often (timeouts, re-queries). */
const LOOP_INTERVAL_MS = 20

/** One pull of one blob: the picker plus the I/O it asks for. */
export class ActivePull {
  private readonly picker: PiecePicker
  private readonly channels = new Map<string, Promise<PeerChannel>>()
  private readonly peerHashes = new Map<string, Uint8Array>()
  private readonly known = new Set<string>()
  /** Pieces each peer still pulling held at its last answer (what a long poll waits to see exceeded). */
  private readonly seenCount = new Map<string, number>()
  private readonly longPollMs: number
  private lastRevive = Date.now()
  private trusted: Uint8Array | undefined
  private readonly ops = new Set<Promise<void>>()
  private wake: (() => void) | undefined
  private bytesFromPeers = 0
  private bytesFromRegistry = 0
  private readonly count: number
  private readonly local = new AbortController()
  private readonly signal: AbortSignal
  /** The last registry, disk or unexpected failure, told when the pull fails (peer failures are routine). */
  private lastError: Error | undefined
  private readonly trace: PullTrace | undefined

  constructor (
    private readonly ex: PullContext,
    readonly digest: string,
    private readonly partial: PartialBlob,
    private readonly opts: PullOptions,
    signal: AbortSignal,
    private readonly registryOnly: boolean
  ) {
    this.count = pieceCount(partial.size, partial.pieceSize)
    this.trace = PullTrace.create(digest)
    this.trace?.ev({ e: 'start', n: this.count, have: partial.have.count() })
    this.signal = AbortSignal.any([signal, this.local.signal])
    // As long as the picker's longest re-query interval, so the next query goes out as the answer comes.
    this.longPollMs = Math.min(MAX_HAVE_WAIT_MS, (ex.picker?.queryIntervalMs ?? DEFAULT_QUERY_INTERVAL_MS) * MAX_QUERY_BACKOFF)
    const { self, picker } = ex
    this.picker = new PiecePicker({ ...picker, pieceCount: this.count, self, registry: opts.registry !== undefined }, partial.have, Date.now())
    if (partial.have.count() > 0) ex.announce(digest)
  }

  registryFetching (): Uint8Array {
    return this.picker.registryFetching().bytes
  }

  registryFetchingNow (): Uint8Array {
    return this.picker.registryInFlight().bytes
  }

  peerGone (peer: string): void {
    this.picker.peerGone(peer)
    this.closeChannel(peer)
    this.poke()
  }

  private addPeer (peer: string): void {
    const { self } = this.ex
    if (this.registryOnly || peer === self || this.ex.isDead(peer) || this.ex.isBanned(peer)) return
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
        const actions = this.picker.tick(Date.now(), this.ex.requestBudget(), this.ex.registryBudget(), peer => this.ex.peerRoom(peer))
        for (const a of actions) if (a.type === 'request') this.trace?.ev({ e: 'req', p: a.peer.slice(-6), i: a.index, budget: this.ex.requestBudget(), room: this.ex.peerRoom(a.peer) })
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
          if (a.type === 'fail') throw new PullFailedError(`pull of ${this.digest} failed: ${a.reason}${this.lastError !== undefined ? ` (last error: ${this.lastError.message})` : ''}`, this.lastError !== undefined ? { cause: this.lastError } : undefined)
          this.dispatch(a)
        }
        await new Promise<void>(resolve => {
          const timer = setTimeout(() => { this.wake = undefined; resolve() }, LOOP_INTERVAL_MS)
          this.wake = () => { clearTimeout(timer); resolve() }
        })
      }
    } finally {
      this.trace?.ev({ e: 'end' })
      this.trace?.flush()
      this.local.abort(new PullAbortedError('pull finished'))
      this.closeAllChannels()
      await this.settle()
    }
  }

  private async saveManifest (): Promise<void> {
    // Every piece hash is known now: keep the manifest so serving does not re-read the blob.
    try {
      await this.ex.savePieceManifest({ digest: this.digest, size: this.partial.size, pieceSize: this.partial.pieceSize, hashes: this.partial.hashes })
    } catch { /* derived again on demand */ }
  }

  private async settle (): Promise<void> {
    while (this.ops.size > 0) await Promise.allSettled([...this.ops])
  }

  private op (fn: () => Promise<void>): void {
    // An op that throws (a provider lookup, a store) leaves the pull going on without it; the pull's failure tells why.
    const p = fn().catch((err: Error) => { if (!this.signal.aborted) this.lastError = err }).finally(() => { this.ops.delete(p); this.poke() })
    this.ops.add(p)
  }

  private findProviders (): void {
    const providers = this.ex.providers
    if (providers === undefined || this.registryOnly) return
    this.op(async () => {
      // Given candidates (the live members), a DHT lookup is only for when
      // they do not have the blob: it walks the whole table, and 8 nodes
      // pulling 6 blobs at once spent half their CPU on it.
      if ((this.opts.candidates?.length ?? 0) > 0) {
        await delay(PROVIDER_LOOKUP_DELAY_MS, undefined, { signal: this.signal }).catch(() => {}) // aborted: checked just below
        if (this.signal.aborted || this.picker.livePeers().some(p => this.picker.peerOffers(p))) return
      }
      let n = 0
      for await (const peer of providers.findProviders(this.digest, { signal: this.signal })) {
        this.addPeer(peer)
        if (++n >= MAX_PROVIDERS_PER_PULL) break
      }
    })
  }

  /**
   * One stream per peer for bitfield queries and PIECE_STREAMS_PER_PEER for pieces, so a query
   * never waits behind megabytes of pipelined pieces (head-of-line blocking
   * turned slow peers into "timed out" peers).
   */
  private channel (peer: string, kind: 'control' | `pieces${number}`): Promise<PeerChannel> {
    const key = `${kind}|${peer}`
    let c = this.channels.get(key)
    if (c === undefined) {
      const timeout = this.ex.picker?.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
      c = this.ex.openStream(peer, AbortSignal.any([this.signal, AbortSignal.timeout(timeout)])).then(s => new PeerChannel(peer, s, timeout, this.ex.buffers, () => { this.picker.peerProgress(peer, Date.now()) }))
      c.catch(() => {}) // every user awaits c and handles its failure; this only keeps an unused one from going unhandled
      this.channels.set(key, c)
    }
    return c
  }

  private closeChannel (peer: string): void {
    for (const key of [`control|${peer}`, ...Array.from({ length: PIECE_STREAMS_PER_PEER }, (_, i) => `pieces${i}|${peer}`)]) {
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
      case 'registry': {
        this.ex.registryRequestStarted()
        return this.op(async () => { try { await this.fetchFromRegistry(a.index) } finally { this.ex.registryRequestEnded() } })
      }
      case 'drop': return this.closeChannel(a.peer)
      case 'ban': {
        this.ex.ban(a.peer)
        return this.closeChannel(a.peer)
      }
    }
  }

  private async query (peer: string): Promise<void> {
    try {
      const ch = await this.channel(peer, 'control')
      // Without a registry no claims change: a peer still pulling answers
      // when it holds more than we saw (a long poll), so its pieces are
      // usable here as they land. With one, claims must stay fresh: plain polls.
      const after = this.opts.registry === undefined ? this.seenCount.get(peer) : undefined
      const ask = after !== undefined ? { after, waitMs: this.longPollMs } : {}
      const { res } = await ch.request({ t: 'have?', digest: this.digest, pieceSize: this.partial.pieceSize, ...ask }, this.signal)
      if (res.t === 'none') { this.picker.peerHave(peer, null, false); return }
      if (res.t !== 'have' || res.digest !== this.digest || res.size !== this.partial.size || res.pieceSize !== this.partial.pieceSize ||
          res.bitfield.length !== Math.ceil(this.count / 8) || res.hashes.length !== this.count * HASH_BYTES) {
        this.picker.peerHave(peer, null, false)
        return
      }
      const bf = new Bitfield(this.count, res.bitfield)
      this.trace?.ev({ e: 'have', p: peer.slice(-6), n: bf.count(), c: res.complete, pu: res.pulling })
      // A bit without a hash cannot be checked: treat it as not held.
      for (let i = 0; i < this.count; i++) if (bf.get(i) && res.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES).every(b => b === 0)) bf.set(i, false)
      this.peerHashes.set(peer, res.hashes)
      if (res.complete && this.trusted === undefined) {
        this.trusted = new Uint8Array(res.hashes)
        this.partial.adoptManifest({ digest: this.digest, size: this.partial.size, pieceSize: this.partial.pieceSize, hashes: this.trusted })
      }
      if (res.pulling && !res.complete) this.seenCount.set(peer, bf.count())
      else this.seenCount.delete(peer)
      const bits = (b: Uint8Array | undefined): Bitfield | undefined => b !== undefined && b.length === bf.bytes.length ? new Bitfield(this.count, b) : undefined
      this.picker.peerHave(peer, bf, res.pulling, bits(res.fetching), bits(res.fetchingNow))
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
    this.ex.pieceRequestStarted(peer)
    try {
      await this.fetchFromPeerCounted(peer, index)
    } finally {
      this.ex.pieceRequestEnded(peer)
    }
  }

  private async fetchFromPeerCounted (peer: string, index: number): Promise<void> {
    let data: PieceBuffer
    try {
      const ch = await this.channel(peer, `pieces${index % PIECE_STREAMS_PER_PEER}`)
      const r = await ch.request({ t: 'piece?', digest: this.digest, pieceSize: this.partial.pieceSize, index }, this.signal)
      if (r.res.t === 'err' && (r.res.code === 'missing' || r.res.code === 'busy')) {
        this.picker.missing(peer, index)
        return
      }
      if (r.res.t !== 'piece' || r.res.index !== index || r.data === undefined) {
        r.data?.release()
        throw new Error(`unexpected answer ${r.res.t}`)
      }
      data = r.data
      this.trace?.ev({ e: 'got', p: peer.slice(-6), i: index })
    } catch {
      this.picker.failed(peer, index, Date.now())
      this.closeChannel(peer)
      return
    }
    try {
      this.bytesFromPeers += data.byteLength
      this.ex.counters.bytesFromPeers += data.byteLength
      // A piece from a peer is only taken against a hash we know: a bit
      // without one was cleared at the query, so this is a peer's lie.
      const expected = this.expectedHash(peer, index)
      let ok = false
      if (expected !== undefined) {
        const stored = await this.storeAndLand(index, data, expected)
        this.trace?.ev({ e: 'stored', p: peer.slice(-6), i: index })
        if (stored === undefined) {
          this.picker.failed(peer, index, Date.now())
          return
        }
        ok = stored
      }
      for (const a of this.picker.received(peer, index, ok, Date.now())) this.dispatch(a as Exclude<PickerAction, { type: 'done' } | { type: 'fail' }>)
    } finally {
      data.release()
    }
  }

  private async fetchFromRegistry (index: number): Promise<void> {
    const registry = this.opts.registry
    if (registry === undefined) return
    const range = pieceRange(this.partial.size, this.partial.pieceSize, index)
    const pooled = this.ex.buffers.take(range.length, this.partial.pieceSize)
    let piece: PieceBuffer
    try {
      const data = await registry(range, this.signal, pooled.bytes)
      // The pooled buffer, filled; else bytes of the callback's own (copied
      // out first if they are part of the pooled buffer).
      const shared = data.buffer === pooled.bytes.buffer
      if (shared && data.byteOffset === pooled.bytes.byteOffset && data.byteLength === pooled.byteLength) {
        piece = pooled
      } else {
        piece = PieceBuffer.unpooled(shared ? data.slice() : data)
        pooled.release()
      }
    } catch (err) {
      pooled.release()
      if (!this.signal.aborted) this.lastError = err as Error
      this.picker.failed('registry', index, Date.now())
      return
    }
    try {
      this.bytesFromRegistry += piece.byteLength
      this.ex.counters.bytesFromRegistry += piece.byteLength
      const ok = await this.storeAndLand(index, piece, this.trusted?.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES))
      if (ok === undefined) {
        this.picker.failed('registry', index, Date.now())
        return
      }
      this.picker.received('registry', index, ok, Date.now())
    } finally {
      piece.release()
    }
  }

  /** Stores `piece` (checked against `expected` when given) and lands it when it is new here; whether it passed, undefined when the store failed. */
  private async storeAndLand (index: number, piece: PieceBuffer, expected: Uint8Array | undefined): Promise<boolean | undefined> {
    const held = this.partial.have.get(index)
    let ok: boolean
    try {
      ok = (await this.partial.storePiece(index, piece.bytes, expected)).ok
    } catch (err) {
      if (!this.signal.aborted) this.lastError = err as Error
      return undefined
    }
    if (ok && !held) this.landed(index, piece)
    return ok
  }

  /** A verified piece new to this node: kept in memory to serve, reported, and the blob advertised. */
  private landed (index: number, data: PieceBuffer): void {
    this.ex.keepRecent(this.digest, this.partial.pieceSize, index, data)
    this.progress()
    this.ex.announce(this.digest)
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
