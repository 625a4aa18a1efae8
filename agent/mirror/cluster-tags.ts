// Tag resolutions shared by the whole cluster through the Raft state: after
// a mirror resolves a tag upstream it records `tag → digest` under
// `mirror/tags/<registry>/<repository>:<tag>`, so while the upstream is down
// any agent — also one that never resolved that tag — serves the cluster's
// last known resolution. The node's own file is kept beside it: it answers
// when Raft has no quorum, and when it is newer than what Raft holds.
import { z } from 'zod'
import { parseKvRecord, readKvRecord, type KvReader } from '../state/kv-record.js'
import type { TagResolution, TagResolutions } from './tag-cache.js'

/** Key prefix of tag resolutions in the Raft KV. */
export const CLUSTER_TAG_PREFIX = 'mirror/tags/'
/** Longest key the Raft KV takes (cluster-state MAX_KEY_BYTES); longer tags stay node-local. */
export const MAX_CLUSTER_TAG_KEY_BYTES = 512
/**
 * An unchanged resolution is written again at most this often: every
 * manifest request resolves upstream, and 8 mirrors pulling one image must
 * not turn into a Raft write per request.
 */
export const CLUSTER_TAG_REFRESH_MS = 10 * 60_000
/** A write waits this long for Raft; past it the manifest is served anyway (the file has it). */
export const CLUSTER_TAG_WRITE_TIMEOUT_MS = 3_000
/**
 * After a failed write (no leader, no quorum) the next writes are skipped
 * this long, so manifest responses are not each held up by the write timeout.
 */
export const CLUSTER_TAG_WRITE_BACKOFF_MS = 30_000
/** A linearizable read waits this long before falling back to this replica's state. */
export const CLUSTER_TAG_READ_TIMEOUT_MS = 1_500
/** Tags listed at most for one repository. */
export const MAX_LISTED_TAGS = 10_000

/** The slice of the agent's Raft the mirror needs (RaftHost has it). */
export interface ClusterKv extends KvReader {
  write: (cmd: { op: 'put', key: string, value: string }, signal?: AbortSignal) => Promise<{ ok: boolean }>
  state: KvReader['state'] & { keys?: (prefix: string, limit?: number) => string[] }
}

/** Where a served tag resolution came from: the cluster's Raft state or this node's own file. */
export type TagResolutionSource = 'cluster' | 'node'

export interface SourcedTagResolution extends TagResolution { source: TagResolutionSource }

const ValueSchema = z.object({ digest: z.string().regex(/^sha256:[a-f0-9]{64}$/), mediaType: z.string().max(200), at: z.number() })

export function clusterTagKey (tagKey: string): string {
  return CLUSTER_TAG_PREFIX + tagKey
}

export interface ClusterTagResolutionsInit {
  kv: ClusterKv
  /** This node's own resolutions (the file next to the blob store). */
  local: TagResolutions
  onWriteError?: (key: string, err: Error) => void
}

export class ClusterTagResolutions implements TagResolutions {
  private writesPausedUntil = 0

  constructor (private readonly init: ClusterTagResolutionsInit) {}

  async set (key: string, value: TagResolution): Promise<void> {
    await this.init.local.set(key, value).catch(() => {})
    const k = clusterTagKey(key)
    if (Buffer.byteLength(k) > MAX_CLUSTER_TAG_KEY_BYTES) return
    const known = parseKvRecord(ValueSchema, this.init.kv.state.get(k))
    if (known !== undefined && known.digest === value.digest && known.mediaType === value.mediaType && value.at - known.at < CLUSTER_TAG_REFRESH_MS) return
    const now = Date.now()
    if (now < this.writesPausedUntil) return
    try {
      const r = await this.init.kv.write({ op: 'put', key: k, value: JSON.stringify(value) }, AbortSignal.timeout(CLUSTER_TAG_WRITE_TIMEOUT_MS))
      if (!r.ok) throw new Error('the Raft state refused the put')
    } catch (err) {
      this.writesPausedUntil = Date.now() + CLUSTER_TAG_WRITE_BACKOFF_MS
      this.init.onWriteError?.(k, err as Error)
    }
  }

  async get (key: string): Promise<SourcedTagResolution | undefined> {
    const k = clusterTagKey(key)
    let cluster: TagResolution | undefined
    if (Buffer.byteLength(k) <= MAX_CLUSTER_TAG_KEY_BYTES) {
      cluster = await readKvRecord(this.init.kv, k, ValueSchema, CLUSTER_TAG_READ_TIMEOUT_MS)
    }
    const own = await this.init.local.get(key).catch(() => undefined)
    // The newest resolution wins; when both name the same digest the cluster agrees with this node.
    if (own !== undefined && (cluster === undefined || (own.at > cluster.at && own.digest !== cluster.digest))) return { ...own, source: 'node' }
    return cluster === undefined ? undefined : { ...cluster, source: 'cluster' }
  }

  async list (repoKey: string): Promise<string[]> {
    const tags = new Set(await this.init.local.list?.(repoKey).catch(() => []) ?? [])
    const prefix = clusterTagKey(repoKey + ':')
    for (const k of this.init.kv.state.keys?.(prefix, MAX_LISTED_TAGS) ?? []) tags.add(k.slice(prefix.length))
    return [...tags].sort().slice(0, MAX_LISTED_TAGS)
  }
}
