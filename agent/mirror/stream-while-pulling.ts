// Streams a blob to a mirror client while this node pulls it: piece by piece
// in order, as the pieces land in the partial file.
import type { ServerResponse } from 'node:http'
import type { BlobStore } from '../../p2p/content/blob-store.js'
import type { PieceExchange } from '../../p2p/content/piece-exchange.js'
import { pieceCount, pieceRange, pieceSizeFor } from '../../p2p/content/pieces.js'
import type { PieceBuffer } from '../../p2p/content/piece-buffers.js'
import { MirrorVerifyError } from './errors.js'
import { clientGone, drained, writeThen } from '../api/ndjson.js'
import type { MirrorStats } from './stats.js'

export interface StreamWhilePullingInit {
  store: BlobStore
  exchange: PieceExchange
  stats: MirrorStats
  log?: { warn: (obj: object, msg: string) => void, debug?: (obj: object, msg: string) => void }
  /** Starts (or joins) the pull of the blob into the store. */
  pull: () => Promise<void>
}

/**
 * Sends the blob in order as its pieces land in the partial file. Pieces
 * from peers were checked against their hashes on the way in; the whole
 * blob is checked by the pull, whose hashing thread hashes every byte that
 * goes into the partial file. The final piece goes out only once the pull
 * has succeeded and the partial was never reset in between: a reset means
 * the assembled blob failed its digest (a holder lied under matching piece
 * hashes) and the pull started over, so pieces sent before it are bytes no
 * check covered; the connection is destroyed instead. (Hashing what was
 * sent here as well cost each agent a third sha256 pass over every blob,
 * on its event loop.)
 *
 * The head goes out with the first piece, so a pull that fails before any
 * byte is ready is thrown to the caller, whose error reply (a 5xx with the
 * reason) the client reads as such; after that, a failure can only cut the
 * response short, and it is logged as a warning with its reason.
 */
export async function streamWhilePulling (init: StreamWhilePullingInit, digest: string, size: number, res: ServerResponse, headers: Record<string, string | number>): Promise<void> {
  const { store, exchange, stats, log } = init
  const pieceSize = pieceSizeFor(size, exchange.pieceSize)
  const n = pieceCount(size, pieceSize)
  const partial = await store.openPartial(digest, size, pieceSize)
  const resets = partial.resets
  let wake: (() => void) | undefined
  const changed = (): void => { const w = wake; wake = undefined; w?.() }
  const off = partial.onPiece(changed)
  let failure: Error | undefined
  let done = false
  const pulled = init.pull().then(() => { done = true; changed() }, (err: Error) => { failure = err; changed() })
  // A client that leaves wakes the wait below (clientGone is true by then).
  res.once('close', changed)
  const started = performance.now()
  let firstByteMs: number | undefined
  let sent = 0
  try {
    for (let i = 0; i < n; i++) {
      const last = i === n - 1
      for (;;) {
        if (clientGone(res)) { log?.debug?.({ digest, piece: i, of: n }, 'mirror client left mid-blob'); return }
        if (failure !== undefined) throw failure
        if (last ? done : (done || store.hasSync(digest) || partial.have.get(i))) break
        await new Promise<void>(resolve => { wake = resolve })
      }
      if (last && partial.resets !== resets) {
        throw new MirrorVerifyError(`blob ${digest}: the pull found a piece sent here wrong (the blob failed its digest) and started over; response aborted`)
      }
      const piece = await readPiece(init, digest, partial, i, size, pieceSize, pulled)
      firstByteMs ??= performance.now() - started
      if (!res.headersSent) res.writeHead(200, { ...headers, 'content-length': size })
      sent += piece.byteLength
      // The piece's buffer goes back once the socket took its bytes or never will.
      if (!writeThen(res, piece.bytes, () => { piece.release() })) await drained(res)
    }
    if (!res.headersSent) res.writeHead(200, { ...headers, 'content-length': size })
    res.end()
    log?.debug?.({ digest, size, pieces: n, firstByteMs: Math.round(firstByteMs ?? 0), totalMs: Math.round(performance.now() - started) }, 'mirror streamed a blob while pulling')
  } catch (err) {
    if (!res.headersSent) {
      // Nothing sent yet: the caller answers with the error's status and reason (and logs a 5xx).
      log?.debug?.({ digest, err: (err as Error).message }, 'blob pull failed before its first byte: answering with an error')
      throw err
    }
    stats.aborted++
    log?.warn({ digest, size, sentBytes: sent, err: (err as Error).message }, 'blob response cut short: the pull behind it failed mid-blob (the client reads an early end of the body)')
    res.destroy(err as Error)
  } finally {
    off()
    await pulled
    // The blob completed between the caller's check and openPartial, which
    // then opened a fresh, empty partial: drop it.
    if (store.hasSync(digest) && store.getPartial(digest) === partial) await partial.discard().catch((err: Error) => { log?.warn({ digest, err: err.message }, 'mirror: dropping an empty partial of a complete blob failed; its directory stays under partial/') })
  }
}

/**
 * A held piece, with a reference for the caller: from the exchange's recent
 * pieces (verified, shared: never written to), else read from disk into a
 * pooled buffer.
 */
async function readPiece (init: StreamWhilePullingInit, digest: string, partial: { readPiece: (i: number, into?: Uint8Array) => Promise<Uint8Array> }, i: number, size: number, pieceSize: number, settled: Promise<void>): Promise<PieceBuffer> {
  const kept = init.exchange.recent.get(digest, pieceSize, i, 'mirror')
  if (kept !== undefined) return kept
  const { start, length } = pieceRange(size, pieceSize, i)
  const piece = init.exchange.buffers.take(length, pieceSize)
  try {
    if (init.store.hasSync(digest)) await init.store.readRange(digest, start, length, piece.bytes)
    else {
      try {
        await partial.readPiece(i, piece.bytes)
      } catch (err) {
        // The partial is completing: its file was closed and is being renamed
        // into the store. Wait for the pull to settle, then read the blob.
        await settled
        if (!init.store.hasSync(digest)) throw err
        await init.store.readRange(digest, start, length, piece.bytes)
      }
    }
    return piece
  } catch (err) {
    piece.release()
    throw err
  }
}
