// JSON records in the Raft KV, read by parts outside the state machine (the
// mirror's tag resolutions, object metadata): linearizable when the cluster
// has a leader, else what this replica applied, and checked by a schema —
// a malformed or foreign value reads as absent.
import type { z } from 'zod'

/** The slice of the agent's Raft a KV record reader needs (RaftHost has it). */
export interface KvReader {
  read: (key: string, signal?: AbortSignal) => Promise<string | undefined>
  state: { get: (key: string) => string | undefined }
}

/** `raw` parsed as JSON and checked by `schema`; undefined when absent or invalid. */
export function parseKvRecord<T> (schema: z.ZodType<T>, raw: string | undefined): T | undefined {
  if (raw === undefined) return undefined
  try {
    const r = schema.safeParse(JSON.parse(raw))
    return r.success ? r.data : undefined
  } catch {
    return undefined // not JSON: no record, like one the schema refuses
  }
}

/**
 * Reads `key`: a linearizable read bounded by `timeoutMs` (and `signal`),
 * falling back to this replica's applied state when there is no leader or
 * quorum to answer in time.
 */
export async function readKvRecord<T> (kv: KvReader, key: string, schema: z.ZodType<T>, timeoutMs: number, signal?: AbortSignal): Promise<T | undefined> {
  const sig = AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(signal !== undefined ? [signal] : [])])
  return parseKvRecord(schema, await kv.read(key, sig).catch(() => kv.state.get(key)))
}
