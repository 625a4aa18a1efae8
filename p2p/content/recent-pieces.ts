// Verified pieces held in memory for serving, least recently used dropped
// first within a byte budget. In a fan-out every piece a node receives is
// asked of it by the other pullers soon after it is announced: serving it
// from here costs no disk read and no new buffer, and one read from disk
// serves every peer that asks for the same piece. Entries are shared by
// every send and never written to: a caller that wants to change the bytes
// copies them first. Pieces nobody asked for lately are dropped, so an idle
// node holds none.
import type { ChunkList } from './pieces.js'

/** Default budget: eight 4 MiB pieces. */
export const DEFAULT_RECENT_PIECE_BYTES = 32 * 1024 * 1024
/** A piece not put or served for this long is dropped by `expire`. */
export const RECENT_PIECE_TTL_MS = 30_000

export type PieceBytes = Uint8Array | ChunkList

export class RecentPieces {
  private readonly entries = new Map<string, { data: PieceBytes, used: number }>()
  private bytes = 0
  hits = 0
  misses = 0

  constructor (readonly budgetBytes: number = DEFAULT_RECENT_PIECE_BYTES, readonly ttlMs = RECENT_PIECE_TTL_MS, private readonly now: () => number = Date.now) {}

  private static key (digest: string, pieceSize: number, index: number): string {
    return `${digest}/${pieceSize}/${index}`
  }

  get (digest: string, pieceSize: number, index: number): PieceBytes | undefined {
    const k = RecentPieces.key(digest, pieceSize, index)
    const v = this.entries.get(k)
    if (v === undefined) { this.misses++; return undefined }
    this.hits++
    // Map order is insertion order: moving the entry to the end marks it used.
    this.entries.delete(k)
    v.used = this.now()
    this.entries.set(k, v)
    return v.data
  }

  /** Keeps a piece that was verified against its hash. A piece larger than the whole budget is not kept. */
  put (digest: string, pieceSize: number, index: number, data: PieceBytes): void {
    if (data.byteLength > this.budgetBytes) return
    const k = RecentPieces.key(digest, pieceSize, index)
    const old = this.entries.get(k)
    if (old !== undefined) { this.entries.delete(k); this.bytes -= old.data.byteLength }
    this.entries.set(k, { data, used: this.now() })
    this.bytes += data.byteLength
    for (const [key, v] of this.entries) {
      if (this.bytes <= this.budgetBytes) break
      this.entries.delete(key)
      this.bytes -= v.data.byteLength
    }
  }

  /** Drops the pieces not put or served for `ttlMs` (or for `olderThanMs`; 0 drops all). */
  expire (olderThanMs = this.ttlMs): void {
    const before = this.now() - olderThanMs
    // Least recently used first: stop at the first one used since.
    for (const [key, v] of this.entries) {
      if (v.used > before) break
      this.entries.delete(key)
      this.bytes -= v.data.byteLength
    }
  }

  /** Forgets every piece of `digest` (the blob was removed). */
  drop (digest: string): void {
    const prefix = `${digest}/`
    for (const [key, v] of this.entries) {
      if (key.startsWith(prefix)) { this.entries.delete(key); this.bytes -= v.data.byteLength }
    }
  }

  get heldBytes (): number { return this.bytes }
  get size (): number { return this.entries.size }
}
