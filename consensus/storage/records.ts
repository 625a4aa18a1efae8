// CBOR encoding of what RaftStorage keeps in level: hard state, snapshot and
// entries, each decoded through its zod schema so corruption is a typed error.
import { Encoder } from 'cbor-x'
import { z } from 'zod'
import { EntrySchema, HardStateSchema, SnapshotMetaSchema, type Entry, type HardState, type Snapshot } from '../types.js'
import { RaftStorageError } from '../errors.js'
import { cborProblem } from '../cbor-guard.js'

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false })
const SnapshotRecord = z.object({ meta: SnapshotMetaSchema, data: z.custom<Uint8Array>(v => v instanceof Uint8Array) })

export const KEY_HARD_STATE = 'h'
export const KEY_SNAPSHOT = 's'
/** Index and term of the entry before the first one kept. */
export const KEY_LOG_START = 'l'
export const ENTRY_PREFIX = 'e'
/** Entry keys sort by index: 'e' + 16 hex digits. */
export function entryKey (index: number): string {
  return ENTRY_PREFIX + index.toString(16).padStart(16, '0')
}

export interface LogStart { index: number, term: number }
const LogStartSchema = z.object({ index: z.number().int().nonnegative(), term: z.number().int().nonnegative() })

export function encodeRecord (v: HardState | Entry | Snapshot | LogStart): Uint8Array {
  return cbor.encode(v)
}

function decodeWith<T> (schema: z.ZodType<T>, bytes: Uint8Array, what: string): T {
  const problem = cborProblem(bytes)
  if (problem !== null) throw new RaftStorageError(`raft storage: ${what} is not acceptable CBOR (${problem}); the data directory may be corrupt`)
  let raw: unknown
  try {
    raw = cbor.decode(bytes)
  } catch (err) {
    throw new RaftStorageError(`raft storage: ${what} is not valid CBOR (${String(err)}); the data directory may be corrupt`)
  }
  const r = schema.safeParse(raw)
  if (!r.success) throw new RaftStorageError(`raft storage: ${what} does not match its schema (${r.error.issues[0]?.message ?? ''}); the data directory may be corrupt`)
  return r.data
}

export const decodeHardState = (b: Uint8Array): HardState => decodeWith(HardStateSchema, b, 'hard state')
export const decodeEntry = (b: Uint8Array): Entry => decodeWith(EntrySchema, b, 'log entry')
export const decodeSnapshot = (b: Uint8Array): Snapshot => decodeWith(SnapshotRecord, b, 'snapshot')
export const decodeLogStart = (b: Uint8Array): LogStart => decodeWith(LogStartSchema, b, 'log start')
