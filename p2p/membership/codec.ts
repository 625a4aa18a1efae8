// CBOR encoding of /bolt/swim/1 messages, checked by zod on decode. Decoding
// throws only SwimDecodeError (oversized, not CBOR, or not a message).
import { Encoder } from 'cbor-x'
import { checkCborShape } from './cbor-guard.js'
import { SwimMessageSchema, type Gossip, type SwimMessage } from './messages.js'

/** Largest encoded message (and frame) accepted or produced. */
export const MAX_MESSAGE_BYTES = 64 * 1024

export class SwimDecodeError extends Error {
  override name = 'SwimDecodeError'
}

export class SwimEncodeError extends Error {
  override name = 'SwimEncodeError'
}

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true })

export function encodeMessage (msg: SwimMessage): Uint8Array {
  // Copied: cbor-x may hand back a view into its reusable buffer.
  const bytes = Uint8Array.from(cbor.encode(msg))
  if (bytes.byteLength > MAX_MESSAGE_BYTES) throw new SwimEncodeError(`swim message ${msg.t} is ${bytes.byteLength} bytes, above the ${MAX_MESSAGE_BYTES} limit`)
  return bytes
}

export function decodeMessage (bytes: Uint8Array): SwimMessage {
  if (bytes.byteLength > MAX_MESSAGE_BYTES) throw new SwimDecodeError(`swim message of ${bytes.byteLength} bytes exceeds ${MAX_MESSAGE_BYTES}`)
  let raw: unknown
  try {
    checkCborShape(bytes)
    raw = cbor.decode(bytes)
  } catch (err) {
    throw new SwimDecodeError('swim message is not valid CBOR', { cause: err })
  }
  const parsed = SwimMessageSchema.safeParse(raw)
  if (!parsed.success) throw new SwimDecodeError(`swim message does not match the schema: ${parsed.error.issues[0]?.message ?? 'invalid'}`)
  return parsed.data
}

/** Encoded size of a value (used to budget piggybacked gossip and push-pull chunks). */
export function encodedSize (value: SwimMessage | Gossip | object): number {
  return cbor.encode(value).byteLength
}
