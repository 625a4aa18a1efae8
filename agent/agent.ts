// The agent: the composition root. Each part is a component started in order
// (each one uses only those before it) and stopped in reverse: the node's
// place in its cluster, the libp2p node, membership (SWIM), Raft, content,
// capsules, services, reachability, the cluster registry and the mirror that
// serves it, S3, and the local API with the dashboard. How each part is built
// is in components.ts, the API's routes in agent-api.ts.
import { rm } from 'node:fs/promises'
import type { BoltLibp2p } from '../p2p/node.js'
import type { MemberMeta } from '../p2p/membership/meta.js'
import { nodeName, type Config } from './config.js'
import { ClusterIdentity, type AgentMode, type TokenInfo } from './identity.js'
import { NetworkHost } from './network-host.js'
import { ApiHost } from './api-host.js'
import type { Logger } from './logger.js'
import type { MembershipHost } from './membership-host.js'
import type { RaftHost } from './raft/raft-host.js'
import type { ContentHost } from './content-host.js'
import type { MirrorServer } from './mirror/mirror-server.js'
import type { ClusterRegistry } from './registry/push-handler.js'
import type { CapsuleHost } from './capsule-host.js'
import type { ServicesHost } from './services/services-host.js'
import { LocalMemberMeta } from './member-meta.js'
import { compactHeap, letYoungGenerationGrow, STARTUP_COMPACT_DELAY_MS } from './gc-tuning.js'
import { buildStatus, type StatusJson } from './status.js'
import { agentApiRoutes } from './agent-api.js'
import { agentContext, createAgentMetrics, createCapsules, createContent, createMembership, createMirror, createRaft, createRegistry, createS3, createServices } from './components.js'
import type { S3Service } from './s3/s3-service.js'

export { AGENT_VERSION } from './member-meta.js'
export { preferredJoinAddr, type AgentMode } from './identity.js'
export type { StatusJson } from './status.js'

export interface AgentOptions {
  dataDir: string
  config: Config
  mode: AgentMode
  log: Logger
  /** Remove the data dir on stop (bolt-agent dev). */
  ephemeral?: boolean
  /** Host root for GPU discovery and device lookups: '/' except in tests (fixture GPU trees). */
  hostRoot?: string
}

/** How long `leave` waits for this node's capsules to run healthy elsewhere before stopping them anyway. */
export const LEAVE_DRAIN_MS = 60_000

/** A part that was started (or began to): how to stop it. */
interface Running { name: string, stop: () => Promise<void> }

export class Agent {
  readonly dataDir: string
  readonly config: Config
  readonly log: Logger
  private readonly identity: ClusterIdentity
  private readonly api: ApiHost
  private readonly running: Running[] = []
  private net!: NetworkHost
  private localMeta!: LocalMemberMeta
  private networkMeta: MemberMeta['network']
  membership!: MembershipHost
  raft!: RaftHost
  content!: ContentHost
  capsules!: CapsuleHost
  services!: ServicesHost
  mirror: MirrorServer | undefined
  registry: ClusterRegistry | undefined
  s3: S3Service | undefined
  private stopping: Promise<void> | undefined
  private leaving = false
  private resolveStopped!: () => void
  /** Settles once the agent has stopped, whoever asked (signal, `leave`, API). */
  readonly stopped = new Promise<void>(resolve => { this.resolveStopped = resolve })
  private readonly stopController = new AbortController()

  constructor (private readonly o: AgentOptions) {
    this.dataDir = o.dataDir
    this.config = o.config
    this.log = o.log
    this.identity = new ClusterIdentity({ dataDir: o.dataDir, mode: o.mode, name: nodeName(o.config), role: o.config.role, log: o.log })
    this.api = new ApiHost({ dataDir: o.dataDir, config: o.config.api, log: o.log })
  }

  get signal (): AbortSignal { return this.stopController.signal }
  get libp2p (): BoltLibp2p { return this.net.libp2p }
  get peerId (): string { return this.net.peerId }
  get role (): 'server' | 'client' { return this.identity.role }
  get apiUrl (): string { return this.api.url }

  async start (): Promise<void> {
    const { config, dataDir, log, identity } = this
    await identity.prepare({ knownMember: (id) => this.membership?.service.member(id) !== undefined, members: () => this.membership?.dialableMembers() ?? [] })
    this.net = await this.begin('libp2p', new NetworkHost({ dataDir, config, admission: identity.admission, role: identity.initialRole(), log }))
    this.running.push({ name: 'admission', stop: async () => { await identity.stop() } })
    const seeds = await identity.establish(this.libp2p, this.signal)
    this.localMeta = await LocalMemberMeta.discover(config, log, this.o.hostRoot)
    const ctx = agentContext({ dataDir, config, log, hostRoot: this.o.hostRoot ?? '/', libp2p: this.libp2p, admission: identity.admission, addrsOf: (id) => this.addrsOf(id) })
    this.membership = await this.begin('membership', await createMembership(ctx, identity.file, this.memberMeta()))
    await this.membership.joinSeeds(seeds, this.o.mode.kind === 'join', this.signal)
    // Each later part's modules load here, after the join: see components.ts.
    this.raft = await this.begin('raft', await createRaft(ctx, this.membership, this.o.mode.kind === 'init'))
    this.content = await this.begin('content', await createContent(ctx, this.membership), async (c) => { await c.stop(this.leaving) })
    const announceNetwork = (n: MemberMeta['network']): void => { this.networkMeta = n; this.membership.updateMeta(this.memberMeta()) }
    this.capsules = await this.begin('capsules', await createCapsules(ctx, { membership: this.membership, raft: this.raft, content: this.content, announceNetwork }), async (c) => {
      // `dev` leaves nothing behind: its capsules go with it.
      if (this.o.ephemeral === true) { await c.supervisor?.stop(); await c.removeAllLocal() }
      await c.stop()
    })
    this.services = await this.begin('services', await createServices(ctx, { membership: this.membership, raft: this.raft, capsules: this.capsules }))
    await this.net.startReachability(identity.file.get().clusterId, () => { this.membership.updateMeta(this.memberMeta()) })
    this.running.push({ name: 'reachability', stop: async () => { await this.net.stopReachability() } })
    this.registry = await createRegistry(ctx, { content: this.content, raft: this.raft, membership: this.membership, clusterKey: () => identity.file.get().clusterKey })
    this.running.push({ name: 'registry', stop: async () => { await this.registry?.stop() } })
    this.mirror = await createMirror(ctx, { content: this.content, raft: this.raft, membership: this.membership, registry: this.registry })
    this.running.push({ name: 'mirror', stop: async () => { await this.mirror?.stop() } })
    this.s3 = await this.begin('s3', await createS3(ctx, { membership: this.membership, raft: this.raft, content: this.content }))
    const metrics = await createAgentMetrics({ membership: this.membership, raft: this.raft, content: this.content, capsules: this.capsules, mirror: () => this.mirror, s3: () => this.s3 })
    const routes = agentApiRoutes({ config, log, identity, peerId: this.peerId, membership: this.membership, raft: this.raft, capsules: this.capsules, services: this.services, mirror: () => this.mirror, registry: () => this.registry, s3: () => this.s3, metrics, ui: this, ctx, status: () => this.status(), tokenInfo: () => this.tokenInfo(), leave: async () => { await this.leave() } })
    await this.begin('api', { start: async () => { await this.api.start(routes) } }, async () => { await this.api.stop() })
    log.info({ id: this.peerId, name: identity.file.get().name, api: this.apiUrl }, 'agent ready')
    setTimeout(() => {
      void compactHeap().catch((err: Error) => { log.debug({ err: err.message }, 'heap compaction after start') }).finally(() => { letYoungGenerationGrow(config) })
    }, STARTUP_COMPACT_DELAY_MS).unref()
  }

  /**
   * Starts a part and records how to stop it. The record comes first: a part
   * that failed half-way through its start is stopped too.
   */
  private async begin<T extends { start: () => Promise<void>, stop?: () => Promise<void> }> (name: string, part: T, stop?: (p: T) => Promise<void>): Promise<T> {
    this.running.push({ name, stop: async () => { await (stop !== undefined ? stop(part) : part.stop?.()) } })
    await part.start()
    return part
  }

  /** This node's metadata as gossiped now: the one builder start-up and every update use. */
  private memberMeta (): MemberMeta {
    const f = this.identity.file.get()
    const meta = this.localMeta.build({ name: f.name, role: f.role, addrs: this.net.advertisedAddrs() })
    return this.networkMeta !== undefined ? { ...meta, network: this.networkMeta } : meta
  }

  addrsOf (peerId: string): string[] {
    // On the path of every cluster stream opened: look the one member up, don't build the status view.
    return this.membership?.service.member(peerId)?.meta.addrs ?? []
  }

  joinAddrs (): string[] { return this.net.joinAddrs() }
  tokenInfo (): TokenInfo { return this.identity.tokenInfo(this.joinAddrs()) }

  status (): StatusJson {
    const f = this.identity.file.get()
    return buildStatus({ self: { id: this.peerId, name: f.name, role: f.role, addrs: this.joinAddrs() }, raft: this.raft.status(), members: this.membership.view(), connection: (id) => this.net.connectionKind(id) })
  }

  /** `bolt-agent dev`'s demo capsule; returns why it could not be started, or undefined. */
  async runDemoCapsule (): Promise<string | undefined> { return await (await import('./demo-capsule.js')).runDemoCapsule(this.capsules, this.raft) }

  /** Fault hook: drop all cluster traffic with these peers. */
  partition (peers: string[]): void { this.identity.admission.partition(peers) }

  /** Tells the cluster this node leaves, then stops. */
  async leave (): Promise<void> {
    this.leaving = true
    // Drain first: a node that has left runs nothing (its capsules moved, or stopped at the deadline).
    await this.capsules.drainAndStopLocal(LEAVE_DRAIN_MS)
    await this.raft.prepareLeave()
    await this.membership.leave()
    await this.identity.file.update({ left: true })
    await this.stop()
  }

  async stop (): Promise<void> {
    this.stopping ??= this.doStop()
    await this.stopping
  }

  private async doStop (): Promise<void> {
    this.stopController.abort()
    for (const part of this.running.reverse()) {
      await part.stop().catch((err: Error) => { this.log.warn({ part: part.name, err: err.message }, 'part did not stop cleanly') })
    }
    if (this.o.ephemeral === true) await rm(this.dataDir, { recursive: true, force: true }).catch((err: Error) => { this.log.warn({ err: err.message }, 'cannot remove the dev data dir') })
    this.resolveStopped()
  }
}
