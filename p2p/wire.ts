// Frames on the wire: CBOR values checked by a zod schema, inside
// length-prefixed frames with a per-protocol maximum size. Decoding never
// throws anything but WireDecodeError, so stream handlers can report and
// drop a bad peer without crashing.
import { decode, encode } from 'cbor-x'
import type { z } from 'zod'
import { checkCborShape } from './membership/cbor-guard.js'

export class WireDecodeError extends Error {
  override name = 'WireDecodeError'
}

export class FrameTooLargeError extends WireDecodeError {
  override name = 'FrameTooLargeError'
}

export function encodeFrame<T> (schema: z.ZodType<T>, value: T, maxBytes: number): Uint8Array {
  const checked = schema.parse(value)
  const bytes = encode(checked) as Uint8Array
  if (bytes.byteLength > maxBytes) throw new FrameTooLargeError(`frame of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes}`)
  return bytes
}

export function decodeFrame<T> (schema: z.ZodType<T>, bytes: Uint8Array, maxBytes: number): T {
  if (bytes.byteLength > maxBytes) throw new FrameTooLargeError(`frame of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes}`)
  let raw: unknown
  try {
    // A header claiming 2^32 items keeps cbor-x busy for seconds: check the shape first.
    checkCborShape(bytes)
    raw = decode(bytes)
  } catch (err) {
    throw new WireDecodeError(`not valid CBOR: ${(err as Error).message}`)
  }
  const parsed = schema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new WireDecodeError(`unexpected message: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim())
  }
  return parsed.data
}
