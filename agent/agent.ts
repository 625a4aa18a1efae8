// The agent: the composition root. It owns the data dir, builds the libp2p
// node with admission, runs membership (SWIM), serves the local API and
// metrics, and shuts everything down in reverse order.
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import type { Registry } from 'prom-client'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { Admission, keyVersionOf, type ClusterSecrets } from '../p2p/admission/admission.js'
import { createBoltNode, loadPeerKey, guardServiceProtocols, KAD_PROTOCOL, PING_PROTOCOL, REACHABILITY_GUARDED_PROTOCOLS, type BoltLibp2p, DEFAULT_MAX_CONNECTIONS, EDGE_MAX_CONNECTIONS } from '../p2p/node.js'
import { dialableAddrs, isRelayed, ownAddrs, RelaySlot, shouldReserve } from '../p2p/reachability/index.js'
import { LanAdvertiser } from '../p2p/discovery/lan.js'
import { openClusterStream, prepareBulk } from '../p2p/dialer.js'
import { clusterKeyFingerprint, formatToken, newClusterId, newClusterKey, newSecret, type JoinToken } from '../p2p/token.js'
import { transportOf } from '../quic/transports.js'
import { ClusterFileStore, readClusterFile, writeAtomic, type ClusterFile } from './cluster-file.js'
import { dhtServerMode, nodeName, reachabilityOptions, type Config } from './config.js'
import { UserError } from './errors.js'
import { makeDirsSync } from './make-dirs.js'
import { checkDataDirMode, refuseSecondAgent } from './data-dir.js'
import { AGENT_UMASK, secureDataDir } from './data-dir-mode.js'
import { joinOverLan, joinThrough, type Seed } from './join.js'
import type { Logger } from './logger.js'
import { createMetrics } from './metrics.js'
import { API_FILE } from './api/client.js'
import { registerLocalAgent, unregisterLocalAgent } from './local-agents.js'
import { ApiServer } from './api/server.js'
import { MembershipHost, type MemberView } from './membership-host.js'
import type { MemberMeta } from '../p2p/membership/meta.js'
import { registerCoreRoutes } from './api/routes.js'
import { registerKvRoutes } from './api/kv-routes.js'
import { RaftHost } from './raft/raft-host.js'
import { aliveMembers, ContentHost, pieceSources } from './content-host.js'
import { registerMirrorRoutes, startMirror } from './mirror/agent-mirror.js'
import type { MirrorServer } from './mirror/mirror-server.js'
import { mirrorMetrics, newMirrorStats } from './mirror/stats.js'
import { CapsuleHost } from './capsule-host.js'
import { ServicesHost } from './services/services-host.js'
import { busyboxPath, DEMO_REF } from './demo-image.js'
import { CapsuleSpecSchema } from './scheduler/spec.js'
import { LocalMemberMeta } from './member-meta.js'
import { capsuleMetrics, raftPositionMetrics } from './day2/capsule-metrics.js'

export { AGENT_VERSION } from './member-meta.js'

export type AgentMode =
  | { kind: 'init' }
  | { kind: 'join', addrs: string[], token: JoinToken }
  | { kind: 'start' }

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

export interface StatusJson {
  node: { id: string, name: string, role: 'server' | 'client', addrs: string[] }
  leader: string | null
  term: number
  /** `connection`: how this agent reaches the member now (a direct or a relayed libp2p connection, or none open). */
  members: Array<MemberView & { connection?: 'direct' | 'relayed' | 'none' }>
}

/** How long `leave` waits for this node's capsules to run healthy elsewhere before stopping them anyway. */
export const LEAVE_DRAIN_MS = 60_000

export class UnknownMemberError extends Error {
  override name = 'UnknownMemberError'
}

export class Agent {
  readonly dataDir: string
  readonly config: Config
  readonly log: Logger
  private readonly mode: AgentMode
  private readonly ephemeral: boolean
  private readonly hostRoot: string
  private localMeta!: LocalMemberMeta
  private clusterFile!: ClusterFileStore
  private admission!: Admission
  libp2p!: BoltLibp2p
  membership!: MembershipHost
  raft!: RaftHost
  content!: ContentHost
  mirror: MirrorServer | undefined
  capsules!: CapsuleHost
  services!: ServicesHost
  private api!: ApiServer
  private metrics!: Registry
  apiUrl = ''
  private stopping: Promise<void> | undefined
  /** Whether this agent wrote DATA/api.json: only then may stop() remove it (a refused second agent must not). */
  private wroteApiFile = false
  private resolveStopped!: () => void
  /** Settles once the agent has stopped, whoever asked (signal, `leave`, API). */
  readonly stopped = new Promise<void>(resolve => { this.resolveStopped = resolve })
  private readonly stopController = new AbortController()
  private relaySlot: RelaySlot | undefined
  private lan: LanAdvertiser | undefined
  private lastAdvertised = ''
  private readonly onSelfUpdate = (): void => { this.refreshAdvertisedAddrs() }
  private networkMeta: MemberMeta['network']

  constructor (opts: AgentOptions) {
    this.dataDir = opts.dataDir
    this.config = opts.config
    this.mode = opts.mode
    this.log = opts.log
    this.ephemeral = opts.ephemeral === true
    this.hostRoot = opts.hostRoot ?? '/'
  }

  get signal (): AbortSignal { return this.stopController.signal }
  get peerId (): string { return this.libp2p.peerId.toString() }
  get role (): 'server' | 'client' { return this.clusterFile.get().role }

  async start (): Promise<void> {
    // Before the first file: nothing the agent writes is for other users.
    process.umask(AGENT_UMASK)
    try {
      makeDirsSync(this.dataDir)
    } catch (err) {
      throw new UserError(`cannot create the data dir ${this.dataDir}: ${(err as Error).message} (choose another with --data)`)
    }
    const fixed = await secureDataDir(this.dataDir)
    if (fixed !== undefined) this.log.warn(fixed)
    await refuseSecondAgent(this.dataDir)
    const existing = await readClusterFile(this.dataDir)
    const file = checkDataDirMode(this.mode.kind, this.dataDir, existing)
    this.clusterFile = new ClusterFileStore(this.dataDir, file ?? placeholderFile(nodeName(this.config)))

    this.admission = new Admission({
      ...(file !== undefined ? { secrets: secretsOf(file) } : {}),
      evicted: file?.evicted ?? [],
      onSecrets: (s) => { void this.clusterFile.update({ ...s }).catch(err => this.log.error({ err }, 'cannot persist cluster secrets')) },
      onEvicted: (ids) => { void this.clusterFile.update({ evicted: ids }).catch(err => this.log.error({ err }, 'cannot persist the evicted list')) },
      knownMember: (id) => this.membership?.service.member(id) !== undefined,
      members: () => this.membership?.dialableMembers() ?? [],
      log: (m) => this.log.debug(m)
    })
    const role = this.initialRole(file)
    this.libp2p = await createBoltNode({
      dataDir: this.dataDir,
      listen: this.config.listen,
      announce: this.config.announce,
      dhtServer: dhtServerMode(this.config, role),
      admission: this.admission,
      reach: reachabilityOptions(this.config, role),
      websockets: this.config.websockets.listen,
      maxConnections: this.config.profile === 'edge' ? EDGE_MAX_CONNECTIONS : DEFAULT_MAX_CONNECTIONS
    })
    try {
      await this.libp2p.start()
    } catch (err) {
      throw new UserError(`cannot listen on ${this.config.listen.join(', ')}: ${(err as Error).message} (pick other --listen addresses)`)
    }
    await this.admission.start(this.libp2p)
    this.log.debug('start: libp2p node started')
    await guardServiceProtocols(this.libp2p, this.admission, [KAD_PROTOCOL, PING_PROTOCOL, ...REACHABILITY_GUARDED_PROTOCOLS])

    let seeds: Seed[] = []
    if (this.mode.kind === 'init') {
      const clusterKey = newClusterKey()
      await this.clusterFile.update({ clusterId: newClusterId(), clusterKey, joinSecret: newSecret(), secretVersion: 1, role: 'server', left: false })
      this.admission.setSecrets(secretsOf(this.clusterFile.get()))
    } else if (this.mode.kind === 'join') {
      const joiner = { libp2p: this.libp2p, admission: this.admission, self: this.peerId, signal: this.signal }
      seeds = this.mode.addrs.length > 0 ? await joinThrough(joiner, this.mode.addrs, this.mode.token) : await joinOverLan(joiner, this.mode.token)
      const seedLines = seeds.flatMap(s => s.addrs.slice(0, 2).map(a => `${a}/p2p/${s.id}`)).slice(0, 16)
      await this.clusterFile.update({ role, left: false, evicted: [], seeds: seedLines })
    } else {
      seeds = this.clusterFile.get().seeds.map(parseSeed).filter((s): s is Seed => s !== undefined)
    }

    const incarnation = this.clusterFile.get().incarnation
    this.localMeta = await LocalMemberMeta.discover(this.config, this.log, this.hostRoot)
    this.log.debug('start: cluster secrets ready')
    this.membership = new MembershipHost({
      libp2p: this.libp2p,
      profile: this.config.profile,
      overrides: this.config.membership,
      incarnation,
      meta: this.memberMeta(),
      openStream: async (peerId, addrs, protocol, signal) => await openClusterStream(this.libp2p, this.admission, peerId, addrs, protocol, signal),
      guard: (h) => this.admission.guard(h),
      onIncarnation: (n) => { void this.clusterFile.update({ incarnation: n }).catch(() => {}) },
      // A member that left is not revoked: it may come back with a token
      // (or the cluster key it still holds); removing one for good is `evict`.
      signer: await loadPeerKey(this.dataDir),
      evicted: (id) => this.admission.isEvicted(id),
      onSeeds: (s) => { void this.clusterFile.update({ seeds: s }).catch(() => {}) },
      log: this.log
    })
    await this.membership.start()
    this.log.debug('start: membership started')
    if (this.mode.kind === 'join') {
      // Admission just answered, so a seed is up: a failure here is worth a retry, not an exit.
      try { await this.membership.join(seeds) } catch { this.membership.joinInBackground(seeds, this.signal) }
    } else if (seeds.length > 0) {
      this.membership.joinInBackground(seeds, this.signal)
    }

    this.raft = new RaftHost({
      self: this.peerId,
      dataDir: this.dataDir,
      raft: this.config.raft,
      bootstrap: this.mode.kind === 'init',
      libp2p: this.libp2p,
      openStream: async (peerId, protocol, signal) => await openClusterStream(this.libp2p, this.admission, peerId, this.addrsOf(peerId), protocol, signal),
      guard: (h) => this.admission.guard(h),
      members: () => this.membership.heardOrder().map(m => ({ id: m.id, state: m.state, addrs: m.addrs, labels: m.labels })),
      log: this.log.child({ part: 'raft' })
    })
    await this.raft.start()
    this.log.debug('start: raft started')

    const openBulk = async (peerId: string, protocol: string, signal: AbortSignal): Promise<Stream> => await openClusterStream(this.libp2p, this.admission, peerId, this.addrsOf(peerId), protocol, signal, 'bulk')
    const openControl = async (peerId: string, protocol: string, signal: AbortSignal): Promise<Stream> => await openClusterStream(this.libp2p, this.admission, peerId, this.addrsOf(peerId), protocol, signal)
    this.content = new ContentHost({
      dataDir: this.dataDir,
      config: this.config.content,
      libp2p: this.libp2p,
      guard: (h) => this.admission.guard(h),
      openStream: openBulk,
      candidates: () => pieceSources(this.membership.view(), this.peerId),
      replicaTargets: () => aliveMembers(this.membership.view(), this.peerId),
      log: this.log.child({ part: 'content' })
    })
    await this.content.start()
    this.membership.addEventListener('member', (evt) => {
      const e = (evt as CustomEvent<{ kind: string, member: { id: string, state: string } }>).detail
      this.content.memberState(e.member.id, e.member.state)
      // The lower id of a pair dials, so the pair shares one TCP connection;
      // an edge agent dials only when it pulls.
      if (e.member.state === 'alive' && this.config.profile !== 'edge' && this.peerId < e.member.id) prepareBulk(this.libp2p, e.member.id, this.addrsOf(e.member.id))
    })
    this.log.debug('start: content started')
    this.capsules = new CapsuleHost({
      self: this.peerId,
      dataDir: this.dataDir,
      config: this.config,
      libp2p: this.libp2p,
      raft: this.raft,
      content: this.content,
      members: () => this.membership.view(),
      announceNetwork: (n) => { this.networkMeta = n; this.membership.updateMeta(this.memberMeta()) },
      guard: (h) => this.admission.guard(h),
      openStream: openControl,
      hostRoot: this.hostRoot,
      log: this.log.child({ part: 'capsules' })
    })
    await this.capsules.start()
    this.log.debug('start: capsules started')
    this.services = new ServicesHost({
      config: this.config.dns,
      isLeader: () => this.raft.status().role === 'leader',
      capsules: () => this.raft.state.capsules.list(),
      catalog: () => this.raft.state.catalog,
      members: () => this.membership.view(),
      write: async (cmd, signal) => await this.raft.write(cmd, signal),
      readIndex: async (signal) => { await this.raft.node.readIndex(signal) },
      log: this.log.child({ part: 'services' })
    })
    this.raft.state.onApply((cmd) => { if (cmd.op.startsWith('capsule.') || cmd.op === 'instance.health') this.services.kick() })
    this.membership.addEventListener('member', () => { this.services.kick() })
    await this.services.start()
    await this.startReachability()

    this.metrics = createMetrics({
      membersByState: () => this.membership.countByState(),
      membership: () => this.membership.stats(),
      bytesByProtocol: () => ({ ...this.membership.bytesByProtocol(), '/bolt/raft/1': this.raft.bytes() }),
      extra: [...this.content.metrics(), ...mirrorMetrics(() => this.mirror?.stats ?? newMirrorStats()), ...this.raft.metrics.gauges(), ...this.raft.refusalMetrics(), ...capsuleMetrics(() => this.raft.state.capsules, () => this.capsules.scheduler?.placements ?? 0), ...raftPositionMetrics(() => this.raft.status())],
      histograms: this.raft.metrics.histograms()
    })
    await this.startApi()
    this.log.info({ id: this.peerId, name: this.clusterFile.get().name, api: this.apiUrl }, 'agent ready')
  }

  private initialRole (file: ClusterFile | undefined): 'server' | 'client' {
    if (file !== undefined) return file.role
    if (this.mode.kind === 'init') return 'server'
    // `auto` is settled by Raft once it knows the voter count; until then a
    // joiner runs as a server for the DHT and takes the Raft role it is given.
    return this.config.role === 'client' ? 'client' : 'server'
  }

  /** Once admitted: hold a relay slot if behind NAT, answer mDNS searches, keep gossiped addresses current. */
  private async startReachability (): Promise<void> {
    this.libp2p.addEventListener('self:peer:update', this.onSelfUpdate)
    if (shouldReserve(this.config.relay.reserve, this.config.announce)) {
      this.relaySlot = new RelaySlot(this.libp2p, { log: (m) => this.log.info(m) })
      await this.relaySlot.start().catch((err: Error) => { this.log.warn({ err: err.message }, 'cannot search for a relay') })
    }
    if (this.config.mdns) {
      this.lan = new LanAdvertiser(this.libp2p)
      await this.lan.start(this.clusterFile.get().clusterId).catch((err: Error) => { this.log.warn({ err: err.message }, 'mDNS unavailable; joiners need an address') })
    }
  }

  private refreshAdvertisedAddrs (): void {
    if (this.membership === undefined || this.stopController.signal.aborted) return
    const addrs = this.advertisedAddrs().join(' ')
    if (addrs === this.lastAdvertised) return
    this.lastAdvertised = addrs
    this.membership.updateMeta(this.memberMeta())
  }

  /** This node's metadata as gossiped now: the one builder start-up and every update use. */
  private memberMeta (): MemberMeta {
    const f = this.clusterFile.get()
    const meta = this.localMeta.build({ name: f.name, role: f.role, addrs: this.advertisedAddrs() })
    return this.networkMeta !== undefined ? { ...meta, network: this.networkMeta } : meta
  }

  /** Addresses other members can dial, without the /p2p part. */
  advertisedAddrs (): string[] {
    return dialableAddrs(ownAddrs(this.libp2p), this.peerId)
  }

  joinAddrs (): string[] {
    return ownAddrs(this.libp2p).map(m => m.toString())
  }

  tokenInfo (): { token: string, addrs: string[], join: string } {
    const f = this.clusterFile.get()
    const token = formatToken({ clusterId: f.clusterId, fingerprint: clusterKeyFingerprint(Buffer.from(f.clusterKey, 'hex')), secret: f.joinSecret })
    const addrs = this.joinAddrs()
    return { token, addrs, join: `bolt-agent join ${preferredJoinAddr(addrs)} --token ${token}` }
  }

  /**
   * `bolt-agent evict NODE`: removes a member for good (by name or peer id).
   * Its peer id is refused, the cluster key and join secret are replaced
   * (members are handed the new key as they next prove the old one), and
   * Raft and the scheduler treat it as gone. The token changes.
   */
  async evict (node: string): Promise<{ evicted: { id: string, name: string }, keyVersion: number, token: string, join: string }> {
    const matches = this.membership.view().filter(m => m.id === node || m.name === node)
    if (matches.length === 0) throw new UnknownMemberError(`no member named ${node} (see bolt-agent status)`)
    if (matches.length > 1) throw new UnknownMemberError(`${matches.length} members are named ${node}: evict by id (${matches.map(m => m.id).join(', ')})`)
    const victim = matches[0]!
    if (victim.id === this.peerId) throw new UnknownMemberError(`${node} is this node: run evict on another member, or leave`)
    const s = this.admission.evict(victim.id, { clusterKey: newClusterKey(), joinSecret: newSecret() })
    await this.clusterFile.update({ ...secretsOf({ ...this.clusterFile.get(), ...s, keyVersion: keyVersionOf(s) }), evicted: this.admission.evictedPeers() })
    this.log.info({ member: victim.id, name: victim.name, keyVersion: keyVersionOf(s) }, 'member evicted; cluster key and token replaced')
    const t = this.tokenInfo()
    return { evicted: { id: victim.id, name: victim.name }, keyVersion: keyVersionOf(s), token: t.token, join: t.join }
  }

  async rotateToken (): Promise<{ token: string, addrs: string[], join: string }> {
    this.admission.rotate(newSecret())
    await this.clusterFile.update({ ...secretsOf({ ...this.clusterFile.get(), ...this.admission.clusterSecrets() }) })
    return this.tokenInfo()
  }

  status (): StatusJson {
    const f = this.clusterFile.get()
    const rs = this.raft.status()
    const voters = new Set(rs.voters)
    const roleOf = (id: string, gossiped: 'server' | 'client'): 'server' | 'client' => rs.voters.length > 0 ? (voters.has(id) ? 'server' : 'client') : gossiped
    return {
      node: { id: this.peerId, name: f.name, role: roleOf(this.peerId, f.role), addrs: this.joinAddrs() },
      leader: rs.leader,
      term: rs.term,
      members: this.membership.view().map(m => ({ ...m, role: roleOf(m.id, m.role), labels: publicLabels(m.labels), ...(m.id !== this.peerId ? { connection: this.connectionKind(m.id) } : {}) }))
    }
  }

  private connectionKind (peerId: string): 'direct' | 'relayed' | 'none' {
    // An id libp2p cannot parse has no connection.
    const conns = ((): ReturnType<BoltLibp2p['getConnections']> => { try { return this.libp2p.getConnections(peerIdFromString(peerId)) } catch { return [] } })()
    const open = conns.filter(c => c.status === 'open')
    if (open.some(c => !isRelayed(c.remoteAddr))) return 'direct'
    return open.length > 0 ? 'relayed' : 'none'
  }

  addrsOf (peerId: string): string[] {
    // On the path of every cluster stream opened: look the one member up, don't build the status view.
    return this.membership.service.member(peerId)?.meta.addrs ?? []
  }

  /**
   * `bolt-agent dev`'s demo: a capsule from an image built on this node from
   * the host's busybox, so a newcomer sees one run with no registry at all.
   * Returns why it could not be started, or undefined.
   */
  async runDemoCapsule (): Promise<string | undefined> {
    if (busyboxPath() === undefined) return 'no busybox on this host (apt-get install busybox-static) for the demo image'
    if (this.capsules.runtime === undefined) return this.capsules.runtimeError ?? 'no OCI runtime on this node'
    // The demo needs no network: `none` leaves the host's interfaces and firewall as they were.
    const spec = CapsuleSpecSchema.parse({ name: 'demo', image: DEMO_REF, args: ['/bin/sh', '-c', 'echo hello from a bolt capsule; while true; do date; sleep 5; done'], resources: { cpu: 0.1, memoryBytes: 32 * 1024 * 1024 }, network: 'none' })
    const r = await this.raft.write({ op: 'capsule.create', spec })
    return r.ok ? undefined : r.reason
  }

  /** Fault hook: drop all cluster traffic with these peers. */
  partition (peers: string[]): void { this.admission.partition(peers) }

  async metricsText (): Promise<string> { return await this.metrics.metrics() }
  metricsContentType (): string { return this.metrics.contentType }

  /** Tells the cluster this node leaves, then stops. */
  private leaving = false

  async leave (): Promise<void> {
    this.leaving = true
    // Drain first: a node that has left runs nothing (its capsules moved, or stopped at the deadline).
    await this.capsules.drainAndStopLocal(LEAVE_DRAIN_MS)
    await this.raft.prepareLeave()
    await this.membership.leave()
    await this.clusterFile.update({ left: true })
    await this.stop()
  }

  private async startApi (): Promise<void> {
    const token = randomBytes(24).toString('hex')
    this.api = new ApiServer(token, { allowRemote: this.config.api.allow_remote, allowedHosts: this.config.api.allowed_hosts })
    registerCoreRoutes(this.api, this)
    registerKvRoutes(this.api, this)
    this.capsules.registerRoutes(this.api)
    this.services.registerRoutes(this.api)
    // Registry mirror: a taken port is a warning, never a failed start.
    this.mirror = await startMirror({ config: this.config.mirror, content: this.content, raft: this.raft, candidates: () => pieceSources(this.membership.view(), this.peerId), log: this.log.child({ part: 'mirror' }), insecure: this.config.content.insecure_registries })
    registerMirrorRoutes(this.api, () => ({ mirror: this.mirror, config: this.config.mirror }))
    try {
      this.apiUrl = await this.api.listen(this.config.api.listen)
    } catch (err) {
      throw new UserError(`cannot serve the API on ${this.config.api.listen}: ${(err as Error).message} (use --api HOST:PORT)`)
    }
    await writeAtomic(join(this.dataDir, API_FILE), JSON.stringify({ url: this.apiUrl, token, pid: process.pid }) + '\n')
    this.wroteApiFile = true
    // So client commands find this agent without --data; without it they still work with --data.
    await registerLocalAgent({ pid: process.pid, dataDir: resolve(this.dataDir), url: this.apiUrl })
      .catch((err: Error) => { this.log.warn(`clients will need --data ${this.dataDir}: ${err.message}`) })
  }

  async stop (): Promise<void> {
    this.stopping ??= this.doStop()
    await this.stopping
  }

  private async doStop (): Promise<void> {
    this.stopController.abort()
    this.libp2p?.removeEventListener('self:peer:update', this.onSelfUpdate)
    this.relaySlot?.stop()
    await this.lan?.stop().catch(() => {})
    await this.api?.close().catch(() => {})
    // Only the file this agent wrote: an agent refused at start (another one
    // runs on this data dir) must leave that one's api.json in place.
    if (this.wroteApiFile) await rm(join(this.dataDir, API_FILE), { force: true }).catch((err: Error) => this.log.warn({ err }, 'cannot remove api.json'))
    if (this.wroteApiFile) await unregisterLocalAgent(process.pid).catch((err: Error) => { this.log.warn(`cannot remove this agent from the runtime dir: ${err.message}`) })
    await this.mirror?.stop().catch(() => {})
    if (this.ephemeral) {
      await this.capsules?.supervisor?.stop().catch(() => {})
      await this.capsules?.removeAllLocal().catch(() => {})
    }
    await this.services?.stop().catch(() => {})
    await this.capsules?.stop().catch(() => {})
    await this.content?.stop(this.leaving).catch(() => {})
    await this.raft?.stop().catch(() => {})
    await this.membership?.stop().catch(() => {})
    await this.admission?.stop().catch(() => {})
    try { await this.libp2p?.stop() } catch {}
    if (this.ephemeral) await rm(this.dataDir, { recursive: true, force: true }).catch(() => {})
    this.resolveStopped()
  }
}

/** Labels without the agent's own `bolt.` keys. */
function publicLabels (labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith('bolt.')))
}

function secretsOf (f: Pick<ClusterFile, 'clusterId' | 'clusterKey' | 'joinSecret' | 'secretVersion' | 'keyVersion' | 'previousKey'>): ClusterSecrets {
  return { clusterId: f.clusterId, clusterKey: f.clusterKey, joinSecret: f.joinSecret, secretVersion: f.secretVersion, keyVersion: f.keyVersion, ...(f.previousKey !== undefined ? { previousKey: f.previousKey } : {}) }
}

function placeholderFile (name: string): ClusterFile {
  const zero32 = '0'.repeat(64)
  return { version: 1, clusterId: '0'.repeat(16), clusterKey: zero32, keyVersion: 1, joinSecret: zero32, secretVersion: 0, name, role: 'server', incarnation: 0, seeds: [], evicted: [], left: false }
}

function parseSeed (s: string): Seed | undefined {
  try {
    const ma = multiaddr(s)
    const id = ma.getComponents().find(c => c.name === 'p2p')?.value
    if (id === undefined) return undefined
    return { id, addrs: [ma.decapsulate('/p2p').toString()] }
  } catch { return undefined }
}

/** The address to print in a join command: a non-loopback QUIC one if any, else any QUIC, else the first. */
export function preferredJoinAddr (addrs: string[]): string {
  const quic = addrs.filter(a => transportOf(a) === 'quic')
  const notLoop = (a: string): boolean => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/')
  return quic.find(notLoop) ?? quic[0] ?? addrs.find(notLoop) ?? addrs[0] ?? ''
}
