// Tag resolutions the cluster agreed on, read from the Raft state under
// `mirror/tags/<registry>/<repository>:<tag>`: while the upstream is down any
// agent serves the cluster's resolution of a tag. The mirror itself never
// writes them: its clients are unauthenticated, and a request through it
// must not become a Raft entry on every replica (an unbounded log anyone
// on loopback could grow). They are written by an operator holding the API
// token (`bolt-agent kv put`, or a future authenticated push); what the
// mirror resolves stays in this node's own file, which answers as `node`.
import { z } from 'zod'
import { readKvRecord, type KvReader } from '../state/kv-record.js'
import type { TagResolution, TagResolutions } from './tag-cache.js'

/** Key prefix of tag resolutions in the Raft KV. */
export const CLUSTER_TAG_PREFIX = 'mirror/tags/'
/** Longest key the Raft KV takes (cluster-state MAX_KEY_BYTES); longer tags stay node-local. */
export const MAX_CLUSTER_TAG_KEY_BYTES = 512
/** A linearizable read waits this long before falling back to this replica's state. */
export const CLUSTER_TAG_READ_TIMEOUT_MS = 1_500
/** Tags listed at most for one repository. */
export const MAX_LISTED_TAGS = 10_000

/** The slice of the agent's Raft the mirror needs (RaftHost has it): reads only. */
export interface ClusterKv extends KvReader {
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
}

export class ClusterTagResolutions implements TagResolutions {
  constructor (private readonly init: ClusterTagResolutionsInit) {}

  /** Kept on this node only (see the top of this file for why not in Raft). */
  async set (key: string, value: TagResolution): Promise<void> {
    await this.init.local.set(key, value)
  }

  async get (key: string): Promise<SourcedTagResolution | undefined> {
    const k = clusterTagKey(key)
    let cluster: TagResolution | undefined
    if (Buffer.byteLength(k) <= MAX_CLUSTER_TAG_KEY_BYTES) {
      cluster = await readKvRecord(this.init.kv, k, ValueSchema, CLUSTER_TAG_READ_TIMEOUT_MS)
    }
    // The node's own tag file is a cache: unreadable, it is as if this node had no resolution.
    const own = await this.init.local.get(key).catch(() => undefined)
    // The newest resolution wins; when both name the same digest the cluster agrees with this node.
    if (own !== undefined && (cluster === undefined || (own.at > cluster.at && own.digest !== cluster.digest))) return { ...own, source: 'node' }
    return cluster === undefined ? undefined : { ...cluster, source: 'cluster' }
  }

  async list (repoKey: string): Promise<string[]> {
    const tags = new Set(await this.init.local.list?.(repoKey).catch(() => []) ?? []) // the node's cache unreadable: the cluster's tags still answer
    const prefix = clusterTagKey(repoKey + ':')
    for (const k of this.init.kv.state.keys?.(prefix, MAX_LISTED_TAGS) ?? []) tags.add(k.slice(prefix.length))
    return [...tags].sort().slice(0, MAX_LISTED_TAGS)
  }
}
