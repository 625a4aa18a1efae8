// Wire codec for Raft messages (`/bolt/raft/1`): CBOR (cbor-x) checked by the
// zod MessageSchema, with an explicit maximum frame size. decodeMessage()
// throws nothing but RaftDecodeError, whatever the bytes.
import { Encoder } from 'cbor-x'
import { MessageSchema, type Message } from './types.js'
import { cborProblem } from './cbor-guard.js'
import { RaftDecodeError, RaftFrameTooLargeError } from './errors.js'

/**
 * Largest encoded message. Appends are bounded by maxSizePerMsg (1 MiB by
 * default, but always at least one entry) and snapshot chunks by
 * snapshotChunkBytes (256 KiB), so 16 MiB leaves room for one large entry.
 */
export const MAX_RAFT_FRAME_BYTES = 16 * 1024 * 1024
/** Largest entry payload a proposal may carry, so that any append fits a frame. */
export const MAX_ENTRY_BYTES = 8 * 1024 * 1024

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false })

export function encodeMessage (m: Message): Uint8Array {
  // Drop undefined optionals so they do not travel as CBOR `undefined`.
  const bytes = cbor.encode(stripUndefined(m))
  if (bytes.length > MAX_RAFT_FRAME_BYTES) {
    throw new RaftFrameTooLargeError(`raft message ${m.type} to ${m.to} is ${bytes.length} bytes, above the ${MAX_RAFT_FRAME_BYTES} byte frame limit`)
  }
  return bytes
}

function stripUndefined (m: Message): Message {
  const o: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(m)) if (v !== undefined) o[k] = v
  return o as Message
}

export function decodeMessage (bytes: Uint8Array): Message {
  if (bytes.length > MAX_RAFT_FRAME_BYTES) {
    throw new RaftDecodeError(`raft frame of ${bytes.length} bytes is above the ${MAX_RAFT_FRAME_BYTES} byte limit`)
  }
  const problem = cborProblem(bytes)
  if (problem !== null) throw new RaftDecodeError(`raft frame is not acceptable CBOR: ${problem}`)
  let raw: unknown
  try {
    raw = cbor.decode(bytes)
  } catch (err) {
    throw new RaftDecodeError(`raft frame is not valid CBOR: ${err instanceof Error ? err.message : String(err)}`)
  }
  const r = MessageSchema.safeParse(raw)
  if (!r.success) {
    throw new RaftDecodeError(`raft frame does not match the message schema: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? ''}`)
  }
  return r.data
}
