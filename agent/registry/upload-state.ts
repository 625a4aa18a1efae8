// Pure parts of a blob upload (OCI distribution spec, "pushing a blob in
// chunks"): the Content-Range a PATCH carries and whether a chunk continues
// the upload where it stands. An upload only grows at its end: a chunk that
// does not start at the current offset is refused with 416 and changes
// nothing, so a client that lost track asks `GET` for the offset and resumes.
import { MirrorRequestError } from '../mirror/errors.js'

/** The largest blob an upload may grow to (a layer of an image, not a disk). */
export const MAX_UPLOAD_BYTES = 16 * 1024 * 1024 * 1024

export interface ChunkRange { start: number, end: number }

/**
 * `Content-Range` of a chunk: `<start>-<end>` (inclusive), as the spec
 * writes it, or `bytes <start>-<end>[/<total>|/*]` as some clients send it.
 * Undefined when absent; a 400 when present and malformed.
 */
export function parseContentRange (header: string | undefined): ChunkRange | undefined {
  if (header === undefined || header.trim() === '') return undefined
  const m = /^\s*(?:bytes[ =])?\s*(\d{1,16})-(\d{1,16})(?:\/(?:\d{1,16}|\*))?\s*$/.exec(header)
  if (m === null) throw new MirrorRequestError(400, 'BLOB_UPLOAD_INVALID', `malformed Content-Range ${JSON.stringify(header.slice(0, 100))} (expected <start>-<end>)`)
  const start = Number(m[1])
  const end = Number(m[2])
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) throw new MirrorRequestError(400, 'BLOB_UPLOAD_INVALID', `Content-Range ${JSON.stringify(header.slice(0, 100))}: the end is before the start`)
  return { start, end }
}

/**
 * Checks a chunk against an upload that holds `offset` bytes: it must start
 * at `offset`; its declared length (Content-Range, Content-Length) must agree
 * and keep the upload under MAX_UPLOAD_BYTES. Returns the most bytes the
 * chunk may carry (the body is cut there); throws 416 / 400 otherwise.
 */
export function admitChunk (offset: number, range: ChunkRange | undefined, contentLength: number | undefined, max = MAX_UPLOAD_BYTES): number {
  if (contentLength !== undefined && (!Number.isSafeInteger(contentLength) || contentLength < 0)) throw new MirrorRequestError(400, 'BLOB_UPLOAD_INVALID', 'invalid Content-Length')
  if (range !== undefined) {
    if (range.start !== offset) throw new MirrorRequestError(416, 'BLOB_UPLOAD_INVALID', `chunk starts at ${range.start} but the upload holds ${offset} bytes (GET the upload for its offset and resume there)`)
    if (range.end < range.start) throw new MirrorRequestError(400, 'BLOB_UPLOAD_INVALID', `Content-Range ${range.start}-${range.end} ends before it starts`)
    const length = range.end - range.start + 1
    if (contentLength !== undefined && contentLength !== length) throw new MirrorRequestError(400, 'BLOB_UPLOAD_INVALID', `Content-Range covers ${length} bytes but Content-Length is ${contentLength}`)
    if (offset + length > max) throw new MirrorRequestError(413, 'SIZE_INVALID', `the upload would exceed ${max} bytes`)
    return length
  }
  if (contentLength !== undefined) {
    if (offset + contentLength > max) throw new MirrorRequestError(413, 'SIZE_INVALID', `the upload would exceed ${max} bytes`)
    return contentLength
  }
  return max - offset
}

/** The `Range` header a registry answers for an upload holding `offset` bytes (`0-<offset-1>`; `0-0` when empty, as distribution does). */
export function uploadRangeHeader (offset: number): string {
  return `0-${Math.max(0, offset - 1)}`
}
