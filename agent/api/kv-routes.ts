// The small linearizable key-value store in the Raft state, for operators and
// for the linearizability check: get and list (ReadIndex), put, cas, delete.
import { z } from 'zod'
import type { RaftHost } from '../raft/raft-host.js'
import { ApiError, type ApiServer } from './server.js'
import { MAX_KEY_BYTES, MAX_VALUE_BYTES } from '../state/cluster-state.js'

/** The most keys one `kv list` returns. */
export const MAX_LIST_KEYS = 10_000

const PutBody = z.object({ value: z.string().max(MAX_VALUE_BYTES) })
const CasBody = z.object({ old: z.string().max(MAX_VALUE_BYTES).nullable(), new: z.string().max(MAX_VALUE_BYTES) })

function checkKey (key: string): string {
  if (key.length === 0 || Buffer.byteLength(key) > MAX_KEY_BYTES) throw new ApiError(400, `keys are 1 to ${MAX_KEY_BYTES} bytes`)
  return key
}

async function body<T> (schema: z.ZodType<T>, raw: unknown): Promise<T> {
  const r = schema.safeParse(raw)
  if (!r.success) throw new ApiError(400, `bad request: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? ''}`)
  return r.data
}

export function registerKvRoutes (api: ApiServer, raft: Pick<RaftHost, 'read' | 'write' | 'node' | 'state'>): void {
  api.route('GET', '/v1/kv/:key', async (req) => {
    const key = checkKey(req.params.key ?? '')
    const value = await raft.read(key, req.signal)
    if (value === undefined) throw new ApiError(404, `no such key: ${key}`)
    return { key, value }
  })
  api.route('GET', '/v1/kv', async (req) => {
    const prefix = req.query.get('prefix') ?? ''
    if (Buffer.byteLength(prefix) > MAX_KEY_BYTES) throw new ApiError(400, `a prefix is at most ${MAX_KEY_BYTES} bytes`)
    // Linearizable like get: confirm through the leader that this replica has applied everything committed.
    await raft.node.readIndex(AbortSignal.any([req.signal, AbortSignal.timeout(5000)]))
    return raft.state.keys(prefix, MAX_LIST_KEYS)
  })
  api.route('DELETE', '/v1/kv/:key', async (req) => {
    const key = checkKey(req.params.key ?? '')
    // Only to say "no such key": a put racing this read survives, as it would a delete ordered before it.
    if (await raft.read(key, req.signal) === undefined) throw new ApiError(404, `no such key: ${key}`)
    await raft.write({ op: 'delete', key }, req.signal)
    return { key, deleted: true }
  })
  api.route('PUT', '/v1/kv/:key', async (req) => {
    const key = checkKey(req.params.key ?? '')
    const b = await body(PutBody, await req.body())
    await raft.write({ op: 'put', key, value: b.value }, req.signal)
    return { key, value: b.value }
  })
  api.route('POST', '/v1/kv/:key/cas', async (req) => {
    const key = checkKey(req.params.key ?? '')
    const b = await body(CasBody, await req.body())
    const r = await raft.write({ op: 'cas', key, old: b.old, value: b.new }, req.signal)
    if (!r.ok) return { key, swapped: false, current: r.current ?? null }
    return { key, swapped: true, value: b.new }
  })
}
