// Wire messages of `/bolt/pieces/1`: CBOR checked by zod, each in a
// length-prefixed frame. A piece response is a header frame followed by one
// raw data frame (so 4 MiB of piece bytes are not re-encoded as CBOR).
// Requests and responses on a stream are strictly in order, which lets a
// puller pipeline several requests on one stream per peer.
import { decode, encode } from 'cbor-x'
import { z } from 'zod'
import { checkCbor } from './cbor-guard.js'
import { FrameTooLargeError, InvalidMessageError } from './errors.js'
import { HASH_BYTES, MAX_PIECE_SIZE, MAX_PIECES, MIN_PIECE_SIZE } from './pieces.js'

const Bytes = z.custom<Uint8Array>(v => v instanceof Uint8Array, { message: 'expected bytes' })

export const PIECES_PROTOCOL = '/bolt/pieces/1'
/** Largest control frame: a have answer for MAX_PIECES pieces carries 2 MiB of hashes plus an 8 KiB bitfield. */
export const MAX_CONTROL_FRAME = MAX_PIECES * HASH_BYTES + MAX_PIECES / 8 + 4096
/** Largest frame of any kind on the protocol. */
export const MAX_FRAME = Math.max(MAX_CONTROL_FRAME, MAX_PIECE_SIZE)
export const MAX_DIGESTS_PER_REPLICATE = 4096
/** A replicate request may carry the bytes of blobs up to this size (the peer then need not pull them back)... */
export const MAX_INLINE_REPLICA_BYTES = 64 * 1024
/** ...up to this many bytes in all. */
export const MAX_INLINE_REPLICA_TOTAL = 512 * 1024
/** Longest a `have?` long poll may ask the server to hold its answer. */
export const MAX_HAVE_WAIT_MS = 5_000

const Digest = z.string().regex(/^sha256:[a-f0-9]{64}$/)
const PieceSize = z.number().int().min(MIN_PIECE_SIZE).max(MAX_PIECE_SIZE)
const Index = z.number().int().nonnegative().max(MAX_PIECES - 1)

export const RequestSchema = z.discriminatedUnion('t', [
  /**
   * Which pieces of `digest` (cut at `pieceSize`) do you hold? With
   * `after` (the count of pieces the asker saw last): while pulling, answer
   * once you hold more than that, or after at most `waitMs` — BitTorrent's
   * `have` message as a long poll, so a piece is usable by others when it
   * lands rather than at their next query.
   */
  z.object({
    t: z.literal('have?'),
    digest: Digest,
    pieceSize: PieceSize,
    after: z.number().int().nonnegative().max(MAX_PIECES).optional(),
    waitMs: z.number().int().nonnegative().max(MAX_HAVE_WAIT_MS).optional()
  }),
  /** The piece manifest of a blob you hold completely. */
  z.object({ t: z.literal('manifest?'), digest: Digest, pieceSize: PieceSize }),
  z.object({ t: z.literal('piece?'), digest: Digest, pieceSize: PieceSize, index: Index }),
  /**
   * Please pull these blobs (from me or anyone) and pin them under `owner`
   * (object replicas). Small blobs may come with their bytes (`data`): one
   * round trip instead of a pull, still checked against the digest.
   */
  z.object({
    t: z.literal('replicate?'),
    owner: z.string().min(1).max(256),
    blobs: z.array(z.object({
      digest: Digest,
      size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
      data: Bytes.refine(b => b.length <= MAX_INLINE_REPLICA_BYTES, { message: `inline replica bytes above ${MAX_INLINE_REPLICA_BYTES}` }).optional()
    }).refine(b => b.data === undefined || b.data.length === b.size, { message: 'inline replica bytes do not match the size' }))
      .max(MAX_DIGESTS_PER_REPLICATE)
      .refine(bs => bs.reduce((n, b) => n + (b.data?.length ?? 0), 0) <= MAX_INLINE_REPLICA_TOTAL, { message: `inline replica bytes above ${MAX_INLINE_REPLICA_TOTAL} in all` })
  })
])
export type PieceRequest = z.infer<typeof RequestSchema>
/** One blob of a replicate request. */
export type ReplicaBlob = Extract<PieceRequest, { t: 'replicate?' }>['blobs'][number]

export const ResponseSchema = z.discriminatedUnion('t', [
  z.object({
    t: z.literal('have'),
    digest: Digest,
    size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    pieceSize: PieceSize,
    complete: z.boolean(),
    /** Whether this node is pulling the blob right now (it will hold more soon). */
    pulling: z.boolean(),
    bitfield: Bytes,
    /** sha256 of each held piece (zeros elsewhere), HASH_BYTES each. */
    hashes: Bytes,
    /** Pieces the node claims for the registry: fetching now or soon (so others wait for them instead). */
    fetching: Bytes.optional(),
    /** Of those, the ones whose registry request is under way (nobody else fetches these). */
    fetchingNow: Bytes.optional()
  }),
  z.object({ t: z.literal('none'), digest: Digest }),
  z.object({ t: z.literal('manifest'), digest: Digest, size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER), pieceSize: PieceSize, hashes: Bytes }),
  /** Header of a piece; exactly `length` bytes follow in the next frame. */
  z.object({ t: z.literal('piece'), digest: Digest, index: Index, length: z.number().int().nonnegative().max(MAX_PIECE_SIZE) }),
  z.object({ t: z.literal('replicated'), ok: z.boolean(), error: z.string().max(1024).optional() }),
  z.object({ t: z.literal('err'), code: z.enum(['missing', 'busy', 'bad-request', 'internal']), message: z.string().max(1024) })
])
export type PieceResponse = z.infer<typeof ResponseSchema>

function decodeWith<T> (schema: z.ZodType<T>, frame: Uint8Array, max: number): T {
  if (frame.length > max) throw new FrameTooLargeError(`frame of ${frame.length} bytes exceeds ${max}`)
  checkCbor(frame)
  let raw: unknown
  try {
    raw = decode(frame)
  } catch (err) {
    throw new InvalidMessageError('frame is not valid CBOR', { cause: err })
  }
  const r = schema.safeParse(raw)
  if (!r.success) throw new InvalidMessageError(`malformed message: ${r.error.issues[0]?.message ?? 'invalid'}`)
  return r.data
}

export function encodeRequest (m: PieceRequest): Uint8Array {
  return encode(m)
}

export function encodeResponse (m: PieceResponse): Uint8Array {
  return encode(m)
}

export function decodeRequest (frame: Uint8Array): PieceRequest {
  return decodeWith(RequestSchema, frame, MAX_CONTROL_FRAME)
}

export function decodeResponse (frame: Uint8Array): PieceResponse {
  return decodeWith(ResponseSchema, frame, MAX_CONTROL_FRAME)
}
