// The serving side of `/bolt/pieces/1`: answers bitfield, manifest, piece
// and replicate requests on one stream, in order, from complete blobs and
// from partial blobs still being pulled. Piece uploads hold one of a bounded
// number of upload slots (0 = serve nothing). Never throws out of the
// handler: any error aborts just that stream.
import type { Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { Bitfield } from './bitfield.js'
import type { BlobStore } from './blob-store.js'
import { decodeRequest, encodeResponse, MAX_FRAME, type PieceRequest, type PieceResponse, type ReplicaBlob } from './piece-messages.js'
import { HASH_BYTES, pieceCount, pieceRange, pieceSizeFor } from './pieces.js'
import { UnsupportedPieceSizeError } from './errors.js'
import { PieceBuffer, type PieceBuffers } from './piece-buffers.js'
import type { RecentPieces } from './recent-pieces.js'
import { whenSealed } from '../../quic/noise-crypto.js'

/** Piece sizes a server may be configured to cut complete blobs at. */
export const MAX_SERVED_PIECE_SIZES = 4

export interface PieceServerHooks {
  /** The exchange's pool of piece buffers, for pieces read from disk to send. */
  buffers: PieceBuffers
  store: BlobStore
  /**
   * The configured piece sizes (at most MAX_SERVED_PIECE_SIZES). A complete
   * blob of size S is served only cut at pieceSizeFor(S, p) for one of them,
   * as pullers cut it: any other size would make this node hash the whole
   * blob again (and keep one more manifest) for whoever asks.
   */
  pieceSizes: readonly number[]
  uploadSlots: number
  /** Digests this node is pulling right now. */
  isPulling: (digest: string) => boolean
  /** Size and piece size of a blob whose pull started but whose partial may not exist yet. */
  pullingShape?: (digest: string) => { size: number, pieceSize: number } | undefined
  /** Bitfields of the pieces of `digest` this node claims for the registry, and of those it is fetching now. */
  registryFetching?: (digest: string) => { claimed: Uint8Array, now: Uint8Array } | undefined
  /** A peer asks this node to hold replicas; resolves with whether it now holds them. */
  onReplicate?: (from: string, owner: string, blobs: ReplicaBlob[], signal: AbortSignal) => Promise<void>
  /** Bytes sent to peers (metrics). */
  onServed?: (bytes: number) => void
  /** Verified pieces kept in memory: served from there before the disk, and pieces read from disk kept there. */
  recent?: RecentPieces
  /** Corrupt the bytes of served pieces (tests of the lying-peer path only). */
  corruptPieces?: boolean
}

/**
 * A piece goes out in slices of this size, the event loop free in between.
 * Handed to the stream at once, 4 MiB are framed and encrypted in one
 * synchronous run of 100-200 ms, which holds up every timer of the agent
 * (SWIM probes, Raft heartbeats) and every other transfer.
 */
export const SEND_SLICE_BYTES = 1024 * 1024

/**
 * Writes a piece as one length-prefixed frame, slice by slice, waiting for
 * drain and yielding between slices. The slices are views of the piece's
 * buffer, not copies (a copy per slice cost the sender 10-35% of its CPU
 * per MiB, most of it in fresh pages): the stream may keep them until the
 * peer's window opens, so the send holds one more reference to the piece
 * and lets go of it only once Noise has sealed the piece's last byte
 * (`whenSealed`): after that no layer holds the plaintext. On QUIC (no
 * Noise: `sealedByNoise` false) every send waits for its native write to
 * finish, so once the last slice is written and the stream holds nothing
 * more, the buffer goes back at once. An aborted send never lets go: the
 * buffer is left to the garbage collector instead of going back to the pool.
 */
export async function sendFrameInSlices (stream: Stream, piece: PieceBuffer, signal: AbortSignal, sealedByNoise: boolean): Promise<void> {
  const data = piece.bytes
  // onDrain rejects when the stream closes first, and when `signal` aborts;
  // it returns at once when nothing waits to drain.
  if (!stream.send(varint.encode(data.byteLength))) await stream.onDrain({ signal })
  if (data.byteLength === 0) return
  // Before the first slice: sealing may happen inside send().
  const held = piece.retain()
  if (sealedByNoise) whenSealed(data, () => held.release())
  for (let off = 0; off < data.byteLength; off += SEND_SLICE_BYTES) {
    if (signal.aborted) throw signal.reason as Error
    // One send per slice: sent in 64 KiB parts, the same piece took 10% longer
    // over TCP (a Yamux frame each, and two Noise messages per frame).
    if (!stream.send(data.subarray(off, off + SEND_SLICE_BYTES))) await stream.onDrain({ signal })
    else await new Promise<void>(resolve => setImmediate(resolve))
  }
  if (!sealedByNoise) {
    // A QUIC stream asks for drain after every write and drains when the
    // native write is done; with nothing queued and no write in flight, no
    // layer holds the piece's memory any more.
    if (stream.writeBufferLength === 0 && !stream.writableNeedsDrain) held.release()
    else stream.log?.('piece buffer left to the garbage collector: %d bytes still queued', stream.writeBufferLength)
  }
}

/** A counting semaphore with FIFO waiters. */
export class Slots {
  private used = 0
  private readonly waiters: Array<() => void> = []
  constructor (readonly size: number) {}
  async acquire (signal: AbortSignal): Promise<void> {
    if (this.used < this.size) { this.used++; return }
    await new Promise<void>((resolve, reject) => {
      const grant = (): void => { signal.removeEventListener('abort', onAbort); resolve() }
      const onAbort = (): void => {
        const i = this.waiters.indexOf(grant)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(signal.reason as Error)
      }
      this.waiters.push(grant)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  release (): void {
    const next = this.waiters.shift()
    if (next !== undefined) next()
    else this.used--
  }
}

/** An answer worked out ahead of sending; `release` frees what it holds (an upload slot), sent or not. */
interface PreparedAnswer {
  send: (stream: Stream, lp: LengthPrefixedStream<Stream>) => Promise<void>
  release: () => void
}

export class PieceServer {
  private readonly slots: Slots
  private readonly streams = new Set<Stream>()
  private readonly shutdown = new AbortController()

  constructor (private readonly hooks: PieceServerHooks) {
    if (hooks.pieceSizes.length === 0 || hooks.pieceSizes.length > MAX_SERVED_PIECE_SIZES) {
      throw new RangeError(`piece server: between 1 and ${MAX_SERVED_PIECE_SIZES} piece sizes, got ${hooks.pieceSizes.length}`)
    }
    this.slots = new Slots(hooks.uploadSlots)
  }

  /** Null when a complete blob of `size` bytes may be cut at `pieceSize`; otherwise the error to answer with. */
  private pieceSizeProblem (size: number, pieceSize: number): UnsupportedPieceSizeError | null {
    const served = [...new Set(this.hooks.pieceSizes.map(p => pieceSizeFor(size, p)))]
    if (served.includes(pieceSize)) return null
    return new UnsupportedPieceSizeError(`piece size ${pieceSize} is not served here: a blob of ${size} bytes is cut at ${served.join(' or ')} bytes (set the same piece_size on every node)`)
  }

  /**
   * Stream handler; the returned promise never rejects. Answers go out in
   * request order, but one answer ahead is prepared while the one before it
   * is still going out: the next request is read and its piece read from
   * disk meanwhile, so the stream does not sit idle on each disk read.
   * `sealedByNoise`: the connection is Noise-encrypted (all but QUIC), which
   * decides when a piece's buffer may go back to the pool.
   */
  async serve (stream: Stream, remotePeer: string, sealedByNoise = true): Promise<void> {
    this.streams.add(stream)
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME })
    let sending: Promise<void> = Promise.resolve()
    try {
      for (;;) {
        let frame: Uint8Array
        try {
          frame = (await lp.read({ signal: this.shutdown.signal })).subarray()
        } catch {
          break // remote closed its side, or we are stopping
        }
        const answer = this.prepare(decodeRequest(frame), remotePeer, sealedByNoise)
        const before = sending
        sending = answer.then(async (a) => {
          try {
            await before
            await a.send(stream, lp)
          } finally {
            a.release()
          }
        }, async (err: unknown) => { await before; throw err })
        sending.catch(() => {}) // seen below, or by the next request's wait; never unhandled meanwhile
        // At most one answer waits behind the one going out.
        await before
      }
      await sending
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
      await sending.catch(() => {}) // releases the upload slot of an answer read ahead
    } finally {
      this.streams.delete(stream)
    }
  }

  stop (): void {
    this.shutdown.abort(new Error('piece server stopping'))
    for (const s of this.streams) s.abort(new Error('piece server stopping'))
  }

  /** Works out the answer to `req` (for a piece: holds an upload slot and reads its bytes); `send` writes it. */
  private async prepare (req: PieceRequest, remotePeer: string, sealedByNoise: boolean): Promise<PreparedAnswer> {
    const reply = (r: PieceResponse): PreparedAnswer => ({ send: async (_s, lp) => { await lp.write(encodeResponse(r)) }, release: () => {} })
    const refuse = (e: Error): PreparedAnswer => reply({ t: 'err', code: 'bad-request', message: `${e.name}: ${e.message}`.slice(0, 1024) })
    const { store } = this.hooks
    if (req.t === 'have?' || req.t === 'manifest?' || req.t === 'piece?') {
      const size = store.sizeSync(req.digest)
      const problem = size !== undefined ? this.pieceSizeProblem(size, req.pieceSize) : null
      if (problem !== null) return refuse(problem)
    }
    switch (req.t) {
      case 'have?': {
        if (this.hooks.uploadSlots === 0) return reply({ t: 'none', digest: req.digest })
        if (req.after !== undefined && req.waitMs !== undefined) await this.pieceAfter(req.digest, req.pieceSize, req.after, req.waitMs)
        if (store.hasSync(req.digest)) {
          const m = await store.pieceManifest(req.digest, req.pieceSize)
          const bf = Bitfield.full(pieceCount(m.size, m.pieceSize))
          return reply({ t: 'have', digest: req.digest, size: m.size, pieceSize: m.pieceSize, complete: true, pulling: false, bitfield: bf.bytes, hashes: m.hashes })
        }
        const p = store.getPartial(req.digest)
        if (p !== undefined && p.pieceSize === req.pieceSize) {
          const claims = this.hooks.registryFetching?.(req.digest)
          return reply({ t: 'have', digest: req.digest, size: p.size, pieceSize: p.pieceSize, complete: false, pulling: this.hooks.isPulling(req.digest), bitfield: p.have.bytes, hashes: p.hashes, ...(claims !== undefined ? { fetching: claims.claimed, fetchingNow: claims.now } : {}) })
        }
        const shape = this.hooks.pullingShape?.(req.digest)
        if (shape !== undefined && shape.pieceSize === req.pieceSize) {
          const n = pieceCount(shape.size, shape.pieceSize)
          return reply({ t: 'have', digest: req.digest, size: shape.size, pieceSize: shape.pieceSize, complete: false, pulling: true, bitfield: new Bitfield(n).bytes, hashes: new Uint8Array(n * HASH_BYTES) })
        }
        return reply({ t: 'none', digest: req.digest })
      }
      case 'manifest?': {
        if (!store.hasSync(req.digest)) return reply({ t: 'err', code: 'missing', message: `${req.digest} is not complete here` })
        const m = await store.pieceManifest(req.digest, req.pieceSize)
        return reply({ t: 'manifest', digest: m.digest, size: m.size, pieceSize: m.pieceSize, hashes: m.hashes })
      }
      case 'piece?': {
        if (this.hooks.uploadSlots === 0) return reply({ t: 'err', code: 'busy', message: 'this node serves no pieces (upload slots = 0)' })
        await this.slots.acquire(this.shutdown.signal)
        let data: PieceBuffer | undefined
        try {
          data = await this.readPiece(req.digest, req.pieceSize, req.index)
        } catch (err) {
          this.slots.release()
          throw err
        }
        if (data === undefined) {
          this.slots.release()
          return reply({ t: 'err', code: 'missing', message: `piece ${req.index} of ${req.digest} is not held here` })
        }
        if (this.hooks.corruptPieces === true && data.byteLength > 0) {
          // A copy: the bytes read may be shared with the recent-piece cache and other sends.
          const bad = data.bytes.slice()
          bad[0] = (bad[0] as number) ^ 0xff
          data.release()
          data = PieceBuffer.unpooled(bad)
        }
        const piece = data
        return {
          send: async (stream, lp) => {
            await lp.write(encodeResponse({ t: 'piece', digest: req.digest, index: req.index, length: piece.byteLength }))
            await sendFrameInSlices(stream, piece, this.shutdown.signal, sealedByNoise)
            this.hooks.onServed?.(piece.byteLength)
          },
          release: () => {
            piece.release()
            this.slots.release()
          }
        }
      }
      case 'replicate?': {
        if (this.hooks.onReplicate === undefined) return reply({ t: 'replicated', ok: false, error: 'this node does not accept replicas' })
        try {
          await this.hooks.onReplicate(remotePeer, req.owner, req.blobs, this.shutdown.signal)
          return reply({ t: 'replicated', ok: true })
        } catch (err) {
          return reply({ t: 'replicated', ok: false, error: (err as Error).message.slice(0, 1000) })
        }
      }
    }
  }

  /**
   * A long poll's wait: returns once this node, pulling `digest`, holds more
   * than `after` pieces of it, or after `waitMs` (at once when it is not
   * pulling the blob, holds it whole, or holds more already).
   */
  private async pieceAfter (digest: string, pieceSize: number, after: number, waitMs: number): Promise<void> {
    const p = this.hooks.store.getPartial(digest)
    if (p === undefined || p.pieceSize !== pieceSize || !this.hooks.isPulling(digest) || p.have.count() > after || this.shutdown.signal.aborted) return
    await new Promise<void>(resolve => {
      const done = (): void => {
        clearTimeout(timer)
        off()
        this.shutdown.signal.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, waitMs)
      const off = p.onPiece(done)
      this.shutdown.signal.addEventListener('abort', done)
    })
  }

  /**
   * The bytes of a piece this node holds, with a reference for the caller:
   * from the recent-piece cache, else read from disk into a pooled buffer
   * (and then kept in the cache).
   */
  private async readPiece (digest: string, pieceSize: number, index: number): Promise<PieceBuffer | undefined> {
    const { store, recent } = this.hooks
    let read: (into: Uint8Array) => Promise<unknown>
    let length: number
    const st = await store.stat(digest)
    const p = st === undefined ? store.getPartial(digest) : undefined
    if (st !== undefined) {
      if (index * pieceSize >= st.size) return undefined
      const range = pieceRange(st.size, pieceSize, index)
      length = range.length
      read = async (into) => await store.readRange(digest, range.start, range.length, into)
    } else if (p !== undefined && p.pieceSize === pieceSize && p.have.get(index)) {
      length = pieceRange(p.size, pieceSize, index).length
      read = async (into) => await p.readPiece(index, into)
    } else {
      return undefined
    }
    const kept = recent?.get(digest, pieceSize, index)
    if (kept !== undefined) return kept
    const piece = this.hooks.buffers.take(length, pieceSize)
    try {
      await read(piece.bytes)
    } catch {
      piece.release()
      return undefined // gone meanwhile: a partial completed or was discarded, a blob was evicted
    }
    recent?.put(digest, pieceSize, index, piece)
    return piece
  }
}
