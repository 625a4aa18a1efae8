// Wiring of the registry mirror into the agent: start it from config (a
// taken port or a refused bind is a warning, not a failed start) with its
// own registry client — guarded on every fetch, credentials only for the
// repositories the config names — and the API route `GET /v1/mirror` the
// CLI asks for the mirror's address.
import { ApiError, type ApiServer } from '../api/server.js'
import type { ContentHost } from '../content-host.js'
import type { Config } from '../config.js'
import { MirrorServer, nodeTagFile, type MirrorLog, type MirrorServerInit } from './mirror-server.js'
import { ClusterTagResolutions, type ClusterKv } from './cluster-tags.js'
import { MIRROR_CLIENT_KINDS, mirrorConfigSnippet, type MirrorClientKind } from './host-config.js'
import type { TagResolutions } from './tag-cache.js'
import { RegistryClient } from '../../p2p/content/registry-client.js'
import type { ImageReference } from '../../p2p/content/reference.js'
import { guardedFetch, isInternalAddress, privateHostAllowed, UpstreamGuard } from './upstream-guard.js'

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
export async function startMirror (o: { config: MirrorConfig, content: ContentHost, candidates: () => string[], log: MirrorLog, raft?: ClusterKv, tags?: TagResolutions, insecure?: string[], push?: MirrorServerInit['push'] }): Promise<MirrorServer | undefined> {
  if (!o.config.enabled) return undefined
  const tags = o.tags ?? (o.raft === undefined
    ? undefined
    : new ClusterTagResolutions({ kv: o.raft, local: nodeTagFile(o.content.store) }))
  const mirror = new MirrorServer({
    store: o.content.store,
    registry: mirrorRegistryClient(o.config, o.insecure ?? []),
    exchange: o.content.exchange,
    candidates: o.candidates,
    listen: o.config.listen,
    upstream: o.config.upstream,
    serveStaleTags: o.config.serve_stale_tags,
    allowRemote: o.config.allow_remote,
    ...mirrorChecks(o.config),
    prefetch: o.config.prefetch,
    log: o.log,
    ...(o.push !== undefined ? { push: o.push } : {}),
    ...(tags !== undefined ? { tags } : {})
  })
  try {
    const url = await mirror.start()
    o.log.info({ url, upstream: o.config.upstream }, 'registry mirror listening')
    const upstreamUrl = URL.parse(`https://${o.config.upstream}`)
    if (upstreamUrl !== null && isInternalAddress(upstreamUrl.hostname) && !privateHostAllowed(o.config.allow_private_hosts, upstreamUrl)) {
      o.log.warn({ upstream: o.config.upstream }, `mirror.upstream ${o.config.upstream} is a loopback or private address: the mirror refuses to fetch from it until [mirror] allow_private_hosts lists "${o.config.upstream}"`)
    }
    return mirror
  } catch (err) {
    o.log.warn({ listen: o.config.listen, err: (err as Error).message }, `registry mirror not started: ${(err as Error).message} (set [mirror] listen to a free address, or enabled = false)`)
    await mirror.stop().catch(() => {}) // it never listened: nothing to release but what start() opened
    return undefined
  }
}

/**
 * Whether `[mirror] credential_repositories` names `ref`: `registry/repo`
 * exactly, or `registry/prefix/*` for every repository under the prefix.
 */
export function credentialsAllowed (patterns: string[], ref: ImageReference): boolean {
  const name = `${ref.registry}/${ref.repository}`
  return patterns.some(p => p.endsWith('/*') ? name.startsWith(p.slice(0, -1)) : p === name)
}

/** The registry client the mirror fetches with (never the one capsule pulls use: those are the operator's). */
export function mirrorRegistryClient (config: MirrorConfig, insecure: string[], extra: { dockerConfigPath?: string | false, fetch?: typeof fetch } = {}): RegistryClient {
  const guard = new UpstreamGuard({ privateHosts: config.allow_private_hosts })
  return new RegistryClient({
    insecure,
    guard: async url => { await guard.check(url) },
    // The same check on the addresses each connection really dials.
    fetch: guardedFetch(config.allow_private_hosts),
    useCredentials: ref => credentialsAllowed(config.credential_repositories, ref),
    ...extra
  })
}

/** The checks a mirror's config asks for, as MirrorServerInit fields. */
export function mirrorChecks (config: MirrorConfig): Pick<MirrorServerInit, 'registries' | 'privateHosts' | 'allowedHosts' | 'diskQuotaBytes'> {
  return {
    ...(config.registries !== undefined ? { registries: config.registries } : {}),
    privateHosts: config.allow_private_hosts,
    allowedHosts: config.allowed_hosts,
    diskQuotaBytes: config.disk_quota_bytes
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
