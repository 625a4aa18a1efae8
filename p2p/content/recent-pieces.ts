// Verified pieces held in memory for serving, least recently used dropped
// first within a byte budget. In a fan-out every piece a node receives is
// asked of it by the other pullers soon after it is announced: serving it
// from here costs no disk read and no new buffer, and one read from disk
// serves every peer that asks for the same piece. Entries are pooled buffers
// (piece-buffers.ts) shared by every send and never written to: the cache
// holds one reference to each, and `get` hands out another that its caller
// releases. Pieces nobody asked for lately are dropped, so an idle node
// holds none.
import type { PieceBuffer } from './piece-buffers.js'

/** Default budget: eight 4 MiB pieces. */
export const DEFAULT_RECENT_PIECE_BYTES = 32 * 1024 * 1024
/** A piece not put or served for this long is dropped by `expire`. */
export const RECENT_PIECE_TTL_MS = 30_000

/** Who reads a piece: a peer's request, or the mirror streaming a blob to its client. */
export type PieceReader = 'peers' | 'mirror'

export class RecentPieces {
  private readonly entries = new Map<string, { data: PieceBuffer, used: number }>()
  private bytes = 0
  /** Lookups found in memory (hits) or not (misses), by reader. */
  readonly counts: Record<PieceReader, { hits: number, misses: number }> = { peers: { hits: 0, misses: 0 }, mirror: { hits: 0, misses: 0 } }

  constructor (readonly budgetBytes: number = DEFAULT_RECENT_PIECE_BYTES, readonly ttlMs = RECENT_PIECE_TTL_MS, private readonly now: () => number = Date.now) {}

  private static key (digest: string, pieceSize: number, index: number): string {
    return `${digest}/${pieceSize}/${index}`
  }

  get hits (): number { return this.counts.peers.hits + this.counts.mirror.hits }
  get misses (): number { return this.counts.peers.misses + this.counts.mirror.misses }

  /** The piece, with a reference for the caller to release. */
  get (digest: string, pieceSize: number, index: number, reader: PieceReader = 'peers'): PieceBuffer | undefined {
    const k = RecentPieces.key(digest, pieceSize, index)
    const v = this.entries.get(k)
    const count = this.counts[reader]
    if (v === undefined) { count.misses++; return undefined }
    count.hits++
    // Map order is insertion order: moving the entry to the end marks it used.
    this.entries.delete(k)
    v.used = this.now()
    this.entries.set(k, v)
    return v.data.retain()
  }

  /** Keeps a piece that was verified against its hash (taking a reference of its own). A piece larger than the whole budget is not kept. */
  put (digest: string, pieceSize: number, index: number, data: PieceBuffer): void {
    if (data.byteLength > this.budgetBytes) return
    const k = RecentPieces.key(digest, pieceSize, index)
    const old = this.entries.get(k)
    if (old !== undefined) this.remove(k, old.data)
    this.entries.set(k, { data: data.retain(), used: this.now() })
    this.bytes += data.byteLength
    for (const [key, v] of this.entries) {
      if (this.bytes <= this.budgetBytes) break
      this.remove(key, v.data)
    }
  }

  private remove (key: string, data: PieceBuffer): void {
    this.entries.delete(key)
    this.bytes -= data.byteLength
    data.release()
  }

  /** Drops the pieces not put or served for `ttlMs` (or for `olderThanMs`; 0 drops all). */
  expire (olderThanMs = this.ttlMs): void {
    const before = this.now() - olderThanMs
    // Least recently used first: stop at the first one used since.
    for (const [key, v] of this.entries) {
      if (v.used > before) break
      this.remove(key, v.data)
    }
  }

  /** Forgets every piece of `digest` (the blob was removed). */
  drop (digest: string): void {
    const prefix = `${digest}/`
    for (const [key, v] of this.entries) {
      if (key.startsWith(prefix)) this.remove(key, v.data)
    }
  }

  get heldBytes (): number { return this.bytes }
  get size (): number { return this.entries.size }
}
