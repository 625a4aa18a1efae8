// Where an object is: `object put` records its metadata in the Raft state
// under `objects/<id>` (size, chunk count, the peers that took a replica),
// so `object get` on any member asks those holders directly — no provider
// lookup in the DHT and no probing of every member. Only when the Raft state
// has no usable record (or none of its holders is alive) does get fall back
// to asking live members and DHT providers.
import { z } from 'zod'
import { readKvRecord, type KvReader } from './state/kv-record.js'

/** Raft KV prefix of object metadata (written by the put route). */
export const OBJECT_META_PREFIX = 'objects/'
/** A linearizable read of the metadata waits this long before using this replica's state. */
export const OBJECT_META_READ_TIMEOUT_MS = 2_000
/** Holders named in one record, at most. */
export const MAX_OBJECT_HOLDERS = 64

export const ObjectMetaSchema = z.object({
  size: z.number().int().nonnegative(),
  chunks: z.number().int().nonnegative(),
  replicas: z.array(z.string().max(128)).max(MAX_OBJECT_HOLDERS),
  /** The node that stored the object first (absent in records of older agents). */
  origin: z.string().max(128).optional()
})
export type ObjectMeta = z.infer<typeof ObjectMetaSchema>

/** The slice of the agent's Raft that reading object metadata needs (RaftHost has it). */
export type ObjectMetaKv = KvReader

/** How get found the object's holders: the Raft record, or (no usable record) live members and providers. */
export type ObjectLocatedBy = 'raft' | 'members'

/** Response header of `GET /v1/objects/:id` (the bytes streamed to the CLI): how the object was found, as JSON. */
export const OBJECT_HEADER = 'x-bolt-object'
export const ObjectGetHeaderSchema = z.object({
  id: z.string(),
  size: z.number().int().nonnegative(),
  bytesFromPeers: z.number().int().nonnegative(),
  bytesLocal: z.number().int().nonnegative(),
  locatedBy: z.enum(['raft', 'members']),
  asked: z.array(z.string().max(128)).max(MAX_OBJECT_HOLDERS)
})
export type ObjectGetHeader = z.infer<typeof ObjectGetHeaderSchema>

export interface ObjectLocation {
  locatedBy: ObjectLocatedBy
  /** Peers to ask, in order. */
  candidates: string[]
  /** Holders the Raft record names (alive or not); empty when located by members. */
  holders: string[]
}

export async function readObjectMeta (kv: ObjectMetaKv, id: string, signal?: AbortSignal): Promise<ObjectMeta | undefined> {
  // Without a leader (no quorum) the record this replica applied is still right: metadata of an id never changes.
  return await readKvRecord(kv, OBJECT_META_PREFIX + id, ObjectMetaSchema, OBJECT_META_READ_TIMEOUT_MS, signal)
}

/** Orders the peers to ask for an object: the recorded holders that are alive, else every live member. */
export function locateObject (meta: ObjectMeta | undefined, alive: string[], self: string): ObjectLocation {
  if (meta !== undefined) {
    const holders = [...new Set([...(meta.origin !== undefined ? [meta.origin] : []), ...meta.replicas])]
    const live = new Set(alive)
    const candidates = holders.filter(h => h !== self && live.has(h))
    if (candidates.length > 0) return { locatedBy: 'raft', candidates, holders }
  }
  return { locatedBy: 'members', candidates: alive.filter(p => p !== self), holders: [] }
}
