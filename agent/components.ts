// How the agent's parts are built from what the parts before them provide.
// Each factory takes the shared context and the parts it uses, and nothing
// more: membership knows nothing of Raft, Raft nothing of capsules.
// Membership is imported with the agent; every later part is imported by its
// factory, so the node joins its cluster (and is seen alive) before Raft,
// content, capsules, S3 and the rest are even loaded.
import type { Stream } from '@libp2p/interface'
import type { Admission } from '../p2p/admission/admission.js'
import { openClusterStream, prepareBulk } from '../p2p/dialer.js'
import { loadPeerKey, type BoltLibp2p } from '../p2p/node.js'
import type { MemberMeta } from '../p2p/membership/meta.js'
import type { ClusterFileStore } from './cluster-file.js'
import type { Config } from './config.js'
import type { ContentHost } from './content-host.js'
import type { CapsuleHost } from './capsule-host.js'
import type { Logger } from './logger.js'
import { MembershipHost } from './membership-host.js'
import type { RaftHost } from './raft/raft-host.js'
import type { ServicesHost } from './services/services-host.js'
import type { ClusterRegistry } from './registry/push-handler.js'
import type { MirrorServer } from './mirror/mirror-server.js'
import type { Registry } from 'prom-client'
import type { S3Service } from './s3/s3-service.js'

type Open = (peerId: string, protocol: string, signal: AbortSignal) => Promise<Stream>

/** What every part may use: the node, its admission, and streams to members. */
export interface AgentContext {
  dataDir: string
  config: Config
  log: Logger
  hostRoot: string
  libp2p: BoltLibp2p
  admission: Admission
  self: string
  /** Dialable addresses of a member, as it gossips them. */
  addrsOf: (peerId: string) => string[]
  openControl: Open
  openBulk: Open
}

export function agentContext (base: Omit<AgentContext, 'self' | 'openControl' | 'openBulk'>): AgentContext {
  const { libp2p, admission, addrsOf } = base
  return {
    ...base,
    self: libp2p.peerId.toString(),
    openControl: async (peerId, protocol, signal) => await openClusterStream(libp2p, admission, peerId, addrsOf(peerId), protocol, signal),
    openBulk: async (peerId, protocol, signal) => await openClusterStream(libp2p, admission, peerId, addrsOf(peerId), protocol, signal, 'bulk')
  }
}

export async function createMembership (ctx: AgentContext, file: ClusterFileStore, meta: MemberMeta): Promise<MembershipHost> {
  const { libp2p, admission, log } = ctx
  const persist = (what: string) => (err: Error): void => { log.error({ err }, `cannot persist ${what}`) }
  return new MembershipHost({
    libp2p,
    profile: ctx.config.profile,
    overrides: ctx.config.membership,
    incarnation: file.get().incarnation,
    meta,
    openStream: async (peerId, addrs, protocol, signal) => await openClusterStream(libp2p, admission, peerId, addrs, protocol, signal),
    guard: (h) => admission.guard(h),
    onIncarnation: (n) => { void file.update({ incarnation: n }).catch(persist('the incarnation')) },
    // A member that left is not revoked: it may come back with a token
    // (or the cluster key it still holds); removing one for good is `evict`.
    signer: await loadPeerKey(ctx.dataDir),
    evicted: (id) => admission.isEvicted(id),
    onSeeds: (s) => { void file.update({ seeds: s }).catch(persist('the seeds')) },
    log
  })
}

export async function createRaft (ctx: AgentContext, membership: MembershipHost, bootstrap: boolean): Promise<RaftHost> {
  const { RaftHost } = await import('./raft/raft-host.js')
  return new RaftHost({
    self: ctx.self,
    dataDir: ctx.dataDir,
    raft: ctx.config.raft,
    bootstrap,
    libp2p: ctx.libp2p,
    openStream: ctx.openControl,
    guard: (h) => ctx.admission.guard(h),
    members: () => membership.heardOrder().map(m => ({ id: m.id, state: m.state, addrs: m.addrs, labels: m.labels })),
    log: ctx.log.child({ part: 'raft' })
  })
}

export async function createContent (ctx: AgentContext, membership: MembershipHost): Promise<ContentHost> {
  const { ContentHost, aliveMembers, pieceSources } = await import('./content-host.js')
  const content = new ContentHost({
    dataDir: ctx.dataDir,
    config: ctx.config.content,
    libp2p: ctx.libp2p,
    guard: (h) => ctx.admission.guard(h),
    openStream: ctx.openBulk,
    candidates: () => pieceSources(membership.view(), ctx.self),
    replicaTargets: () => aliveMembers(membership.view(), ctx.self),
    log: ctx.log.child({ part: 'content' })
  })
  membership.onMember((id, state) => {
    content.memberState(id, state)
    // The lower id of a pair dials, so the pair shares one TCP connection;
    // an edge agent dials only when it pulls.
    if (state === 'alive' && ctx.config.profile !== 'edge' && ctx.self < id) prepareBulk(ctx.libp2p, id, ctx.addrsOf(id))
  })
  return content
}

export async function createCapsules (ctx: AgentContext, parts: { membership: MembershipHost, raft: RaftHost, content: ContentHost, announceNetwork: (n: MemberMeta['network']) => void }): Promise<CapsuleHost> {
  const { CapsuleHost } = await import('./capsule-host.js')
  return new CapsuleHost({
    self: ctx.self,
    dataDir: ctx.dataDir,
    config: ctx.config,
    libp2p: ctx.libp2p,
    raft: parts.raft,
    content: parts.content,
    members: () => parts.membership.view(),
    announceNetwork: parts.announceNetwork,
    guard: (h) => ctx.admission.guard(h),
    openStream: ctx.openControl,
    hostRoot: ctx.hostRoot,
    log: ctx.log.child({ part: 'capsules' })
  })
}

export async function createServices (ctx: AgentContext, parts: { membership: MembershipHost, raft: RaftHost, capsules: CapsuleHost }): Promise<ServicesHost> {
  const { raft, membership, capsules } = parts
  const { ServicesHost } = await import('./services/services-host.js')
  const services = new ServicesHost({
    config: ctx.config.dns,
    isLeader: () => raft.status().role === 'leader',
    capsules: () => raft.state.capsules.list(),
    catalog: () => raft.state.catalog,
    members: () => membership.view(),
    write: async (cmd, signal) => await raft.write(cmd, signal),
    readIndex: async (signal) => { await raft.node.readIndex(signal) },
    onBridgeReady: async (fn) => { await capsules.onBridgeReady(fn) },
    log: ctx.log.child({ part: 'services' })
  })
  raft.state.onApply((cmd) => { if (cmd.op.startsWith('capsule.') || cmd.op === 'instance.health') services.kick() })
  membership.onMember(() => { services.kick() })
  return services
}

/** The registry mirror, if enabled: a taken port is a warning, never a failed start. */
export async function createMirror (ctx: AgentContext, parts: { membership: MembershipHost, raft: RaftHost, content: ContentHost, registry: ClusterRegistry | undefined }): Promise<MirrorServer | undefined> {
  if (!ctx.config.mirror.enabled) return undefined
  const [{ startMirror }, { pieceSources }] = await Promise.all([import('./mirror/agent-mirror.js'), import('./content-host.js')])
  return await startMirror({
    config: ctx.config.mirror,
    content: parts.content,
    raft: parts.raft,
    candidates: () => pieceSources(parts.membership.view(), ctx.self),
    log: ctx.log.child({ part: 'mirror' }),
    insecure: ctx.config.content.insecure_registries,
    ...(parts.registry !== undefined ? { push: parts.registry } : {})
  })
}

/** The cluster's own registry (pushes), answered on the mirror's listener; undefined when `[registry] enabled = false`. */
export async function createRegistry (ctx: AgentContext, parts: { membership: MembershipHost, raft: RaftHost, content: ContentHost, clusterKey: () => string }): Promise<ClusterRegistry | undefined> {
  if (!ctx.config.registry.enabled) return undefined
  const [{ createClusterRegistry }, { aliveMembers, pieceSources }] = await Promise.all([import('./registry/agent-registry.js'), import('./content-host.js')])
  const registry = createClusterRegistry({
    config: ctx.config.registry,
    content: parts.content,
    raft: parts.raft,
    candidates: () => pieceSources(parts.membership.view(), ctx.self),
    replicaTargets: () => aliveMembers(parts.membership.view(), ctx.self),
    self: ctx.self,
    clusterKey: parts.clusterKey,
    log: ctx.log.child({ part: 'registry' })
  })
  parts.content.clusterImages = registry?.content
  return registry
}

/** The S3 endpoint over the object store (its listener opens in start(); a taken port leaves it off, logged). */
export async function createS3 (ctx: AgentContext, parts: { membership: MembershipHost, raft: RaftHost, content: ContentHost }): Promise<S3Service> {
  const { agentS3 } = await import('./s3/agent-s3.js')
  return agentS3({ config: ctx.config.s3, dataDir: ctx.dataDir, raft: parts.raft, content: parts.content, self: ctx.self, members: () => parts.membership.view(), log: ctx.log.child({ part: 's3' }) })
}

/** The agent's Prometheus registry, read from the parts' own counters at scrape time. */
export async function createAgentMetrics (parts: { membership: MembershipHost, raft: RaftHost, content: ContentHost, capsules: CapsuleHost, mirror: () => MirrorServer | undefined, s3: () => S3Service | undefined }): Promise<Registry> {
  const { membership, raft, content } = parts
  const [{ createMetrics }, { mirrorMetrics, newMirrorStats }, { s3Metrics }, { capsuleMetrics, raftPositionMetrics }] = await Promise.all([
    import('./metrics.js'), import('./mirror/stats.js'), import('./s3/stats.js'), import('./day2/capsule-metrics.js')
  ])
  return createMetrics({
    membersByState: () => membership.countByState(),
    membership: () => membership.stats(),
    bytesByProtocol: () => ({ ...membership.bytesByProtocol(), '/bolt/raft/1': raft.bytes() }),
    extra: [...content.metrics(), ...mirrorMetrics(() => parts.mirror()?.stats ?? newMirrorStats()), ...raft.metrics.gauges(), ...raft.refusalMetrics(), ...s3Metrics(() => parts.s3()?.stats()), ...capsuleMetrics(() => raft.state.capsules, () => parts.capsules.scheduler?.placements ?? 0), ...raftPositionMetrics(() => raft.status())],
    histograms: raft.metrics.histograms()
  })
}
