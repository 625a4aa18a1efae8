// The agent's local API: every part's routes, in the order they are
// registered once the parts run. Route modules load here, after the join
// (see components.ts); each registrar hands its routes only what they serve.
import type { Registry } from 'prom-client'
import type { RouteRegistrar } from './api-host.js'
import type { CoreRoutesHost } from './api/routes.js'
import type { CapsuleHost } from './capsule-host.js'
import type { AgentContext } from './components.js'
import type { Config } from './config.js'
import type { ClusterIdentity, TokenInfo } from './identity.js'
import type { Logger } from './logger.js'
import type { MembershipHost } from './membership-host.js'
import type { MirrorServer } from './mirror/mirror-server.js'
import type { RaftHost } from './raft/raft-host.js'
import type { ClusterRegistry } from './registry/push-handler.js'
import type { S3Service } from './s3/s3-service.js'
import type { ServicesHost } from './services/services-host.js'
import type { StatusJson } from './status.js'
import type { UiParts } from './ui/sources.js'

/** What the API's routes reach of the running agent. */
export interface AgentApiParts {
  config: Config
  log: Logger
  identity: ClusterIdentity
  peerId: string
  membership: MembershipHost
  raft: RaftHost
  capsules: CapsuleHost
  services: ServicesHost
  mirror: () => MirrorServer | undefined
  registry: () => ClusterRegistry | undefined
  s3: () => S3Service | undefined
  metrics: Registry
  /** The dashboard's view of the agent, and the cluster streams it reads other nodes' figures through. */
  ui: UiParts
  ctx: AgentContext
  status: () => StatusJson
  tokenInfo: () => TokenInfo
  leave: () => Promise<void>
}

export function agentApiRoutes (p: AgentApiParts): RouteRegistrar[] {
  const { config, identity } = p
  return [
    async (api) => { (await import('./api/routes.js')).registerCoreRoutes(api, coreRoutesHost(p)) },
    async (api) => { (await import('./api/kv-routes.js')).registerKvRoutes(api, p.raft) },
    (api) => { p.capsules.registerRoutes(api) },
    (api) => { p.services.registerRoutes(api) },
    async (api) => { (await import('./mirror/agent-mirror.js')).registerMirrorRoutes(api, () => ({ mirror: p.mirror(), config: config.mirror })) },
    (api) => { p.s3()?.registerRoutes(api) },
    async (api) => { (await import('./registry/agent-registry.js')).registerRegistryRoutes(api, () => ({ registry: p.registry(), mirrorUrl: p.mirror()?.url ?? null, clusterKey: identity.file.get().clusterKey, replicas: config.registry.replicas })) },
    async (api) => {
      const [{ registerUi }, { uiSources }] = await Promise.all([import('./ui/ui.js'), import('./ui/sources.js')])
      await registerUi(api, uiSources(p.ui, p.ctx))
    }
  ]
}

function coreRoutesHost (p: AgentApiParts): CoreRoutesHost {
  return {
    log: p.log,
    debug: p.config.debug.enabled,
    status: p.status,
    tokenInfo: p.tokenInfo,
    rotateToken: async () => { await p.identity.rotateSecret(); return p.tokenInfo() },
    evict: async (node) => {
      const e = await p.identity.evict(node, p.membership.view(), p.peerId)
      return { evicted: { id: e.id, name: e.name }, keyVersion: e.keyVersion, ...p.tokenInfo() }
    },
    leave: p.leave,
    metrics: () => ({ text: async () => await p.metrics.metrics(), contentType: p.metrics.contentType }),
    setDropRate: (rate) => { p.membership.setDropRate(rate) },
    partition: (peers) => { p.identity.admission.partition(peers) }
  }
}
