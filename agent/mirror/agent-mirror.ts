// Wiring of the registry mirror into the agent: start it from config (a
// taken port or a refused bind is a warning, not a failed start), and the
// API route `GET /v1/mirror` the CLI asks for the mirror's address.
import { ApiError, type ApiServer } from '../api/server.js'
import type { ContentHost } from '../content-host.js'
import type { Config } from '../config.js'
import { MirrorServer, nodeTagFile, type MirrorLog } from './mirror-server.js'
import { ClusterTagResolutions, type ClusterKv } from './cluster-tags.js'
import { MIRROR_CLIENT_KINDS, mirrorConfigSnippet, type MirrorClientKind } from './host-config.js'
import type { TagResolutions } from './tag-cache.js'

export type MirrorConfig = Config['mirror']

export interface MirrorInfo {
  /** Base URL of the mirror, or null when it is off or could not bind. */
  url: string | null
  upstream: string
  serveStaleTags: boolean
}

/**
 * Starts the mirror if enabled; undefined when disabled or when it cannot
 * bind (logged). Given the agent's Raft, tag resolutions are shared by the
 * cluster (see cluster-tags.ts); without it they stay on this node.
 */
export async function startMirror (o: { config: MirrorConfig, content: ContentHost, candidates: () => string[], log: MirrorLog, raft?: ClusterKv, tags?: TagResolutions }): Promise<MirrorServer | undefined> {
  if (!o.config.enabled) return undefined
  const tags = o.tags ?? (o.raft === undefined
    ? undefined
    : new ClusterTagResolutions({
      kv: o.raft,
      local: nodeTagFile(o.content.store),
      onWriteError: (key, err) => { o.log.debug({ key, err: err.message }, 'tag resolution not recorded in the cluster state (kept on this node)') }
    }))
  const mirror = new MirrorServer({
    store: o.content.store,
    registry: o.content.registry,
    exchange: o.content.exchange,
    candidates: o.candidates,
    listen: o.config.listen,
    upstream: o.config.upstream,
    serveStaleTags: o.config.serve_stale_tags,
    allowRemote: o.config.allow_remote,
    prefetch: o.config.prefetch,
    log: o.log,
    ...(tags !== undefined ? { tags } : {})
  })
  try {
    const url = await mirror.start()
    o.log.info({ url, upstream: o.config.upstream }, 'registry mirror listening')
    return mirror
  } catch (err) {
    o.log.warn({ listen: o.config.listen, err: (err as Error).message }, `registry mirror not started: ${(err as Error).message} (set [mirror] listen to a free address, or enabled = false)`)
    await mirror.stop().catch(() => {})
    return undefined
  }
}

export function mirrorInfo (mirror: MirrorServer | undefined, config: MirrorConfig): MirrorInfo {
  return { url: mirror?.url ?? null, upstream: config.upstream, serveStaleTags: config.serve_stale_tags }
}

/** `GET /v1/mirror` → MirrorInfo (+ stats); `GET /v1/mirror/config/:kind` → `{ snippet }`. */
export function registerMirrorRoutes (api: ApiServer, get: () => { mirror: MirrorServer | undefined, config: MirrorConfig }): void {
  api.route('GET', '/v1/mirror', async () => {
    const { mirror, config } = get()
    return { ...mirrorInfo(mirror, config), stats: mirror?.stats ?? null }
  })
  api.route('GET', '/v1/mirror/config/:kind', async (req) => {
    const { mirror, config } = get()
    const kind = req.params.kind as MirrorClientKind
    if (!MIRROR_CLIENT_KINDS.includes(kind)) throw new ApiError(400, `unknown client ${kind}: one of ${MIRROR_CLIENT_KINDS.join(', ')}`)
    if (mirror === undefined) throw new ApiError(409, 'the registry mirror is not running on this agent (see the agent log; [mirror] enabled/listen)')
    return { snippet: mirrorConfigSnippet(kind, mirror.url, config.upstream) }
  })
}
