// Wiring of the cluster registry into the agent: built from `[registry]`
// config over the content host and Raft, handed to the mirror's listener
// (which it answers first), and the API routes the CLI uses:
// `GET /v1/registry/token` (the push credential, API token needed) and
// `GET /v1/registry/images` (the cluster's catalog).
import type { ApiServer } from '../api/server.js'
import type { Config } from '../config.js'
import type { ContentHost } from '../content-host.js'
import { PUSH_USERNAME, pushCredential } from './auth.js'
import { Catalog, CLUSTER_REGISTRY, type CatalogKv } from './catalog.js'
import { ClusterRegistry, type RegistryLog } from './push-handler.js'

export interface RegistryHostInit {
  config: Config['registry']
  content: ContentHost
  raft: CatalogKv
  candidates: () => string[]
  replicaTargets: () => string[]
  self: string
  /** The cluster key (hex) now: the push credential is derived from it. */
  clusterKey: () => string
  log: RegistryLog
}

/** The cluster registry, or undefined when `[registry] enabled = false`. */
export function createClusterRegistry (o: RegistryHostInit): ClusterRegistry | undefined {
  if (!o.config.enabled) return undefined
  return new ClusterRegistry({
    store: o.content.store,
    exchange: o.content.exchange,
    catalog: new Catalog(o.raft),
    candidates: o.candidates,
    replicaTargets: o.replicaTargets,
    self: o.self,
    replicas: o.config.replicas,
    credential: () => pushCredential(o.clusterKey()),
    gcGraceMs: o.config.gc_grace_s * 1000,
    log: o.log
  })
}

export function registerRegistryRoutes (api: ApiServer, get: () => { registry: ClusterRegistry | undefined, mirrorUrl: string | null, clusterKey: string, replicas: number }): void {
  api.route('GET', '/v1/registry/token', async () => {
    const { registry, mirrorUrl, clusterKey } = get()
    return { username: PUSH_USERNAME, password: pushCredential(clusterKey), registry: mirrorUrl === null ? null : mirrorUrl.replace(/^https?:\/\//, ''), enabled: registry !== undefined }
  })
  api.route('GET', '/v1/registry/images', async (req) => {
    const { registry, replicas } = get()
    return { registry: CLUSTER_REGISTRY, replicas, images: await registry?.currentImages(req.signal) ?? [] }
  })
}
