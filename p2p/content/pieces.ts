// Fixed-size pieces of a blob and the piece manifest: the sha256 of every
// piece, derived once per blob and shared with peers, so a piece is checked
// the moment it arrives rather than only when the whole blob is in.
import { z } from 'zod'
import { sha256Bytes } from './digest.js'

const Bytes = z.custom<Uint8Array>(v => v instanceof Uint8Array, { message: 'expected bytes' })

/** 4 MiB: large enough that per-piece overhead (a request, a hash, an fsync) is noise, small enough to spread a 100 MiB layer over many peers. */
export const DEFAULT_PIECE_SIZE = 4 * 1024 * 1024
/** Smallest and largest piece size a node accepts from config or from a peer. */
export const MIN_PIECE_SIZE = 16 * 1024
export const MAX_PIECE_SIZE = 16 * 1024 * 1024
/** Bound on pieces per blob: 65,536 × 4 MiB = 256 GiB, and a have-bitfield of at most 8 KiB. */
export const MAX_PIECES = 65536
export const HASH_BYTES = 32

/** Piece bytes as read off a stream: a list of chunks (a Uint8ArrayList), copied once where they are stored. */
export interface ChunkList extends Iterable<Uint8Array> {
  readonly byteLength: number
  subarray: () => Uint8Array
}

export interface PieceManifest {
  digest: string
  size: number
  pieceSize: number
  /** sha256 of each piece, concatenated (HASH_BYTES × pieceCount). */
  hashes: Uint8Array
}

export const PieceManifestSchema = z.object({
  digest: z.string().regex(/^sha256:[a-f0-9]{64}$/),
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  pieceSize: z.number().int().min(MIN_PIECE_SIZE).max(MAX_PIECE_SIZE),
  hashes: Bytes
}).refine(m => m.hashes.length === HASH_BYTES * pieceCount(m.size, m.pieceSize), { message: 'hashes length does not match size / pieceSize' })
  .refine(m => pieceCount(m.size, m.pieceSize) <= MAX_PIECES, { message: `more than ${MAX_PIECES} pieces` })

export function pieceCount (size: number, pieceSize: number): number {
  return Math.ceil(size / pieceSize)
}

export function pieceRange (size: number, pieceSize: number, index: number): { start: number, length: number } {
  const start = index * pieceSize
  if (index < 0 || start >= size) throw new RangeError(`piece ${index} is outside a blob of ${size} bytes`)
  return { start, length: Math.min(pieceSize, size - start) }
}

export function pieceHash (m: PieceManifest, index: number): Uint8Array {
  return m.hashes.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES)
}

export function hashPiece (data: Uint8Array): Uint8Array {
  return sha256Bytes(data)
}

export function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Smallest piece size (a power of two ≥ `preferred`) that keeps a blob within MAX_PIECES. */
export function pieceSizeFor (size: number, preferred = DEFAULT_PIECE_SIZE): number {
  let ps = preferred
  while (pieceCount(size, ps) > MAX_PIECES && ps < MAX_PIECE_SIZE) ps *= 2
  return ps
}
