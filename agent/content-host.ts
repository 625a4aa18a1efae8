// The agent's side of content: the blob store in DATA/blobs, the registry
// client, the piece exchange behind admission, DHT provider records, and the
// image puller — plus turning a pulled image into one the runtime can run.
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { StreamHandler } from '@libp2p/interface'
import { BlobStore } from '../p2p/content/blob-store.js'
import { RegistryClient } from '../p2p/content/registry-client.js'
import { PieceExchange } from '../p2p/content/piece-exchange.js'
import { DhtProviderSource } from '../p2p/content/providers.js'
import { ImagePuller, type ClusterResolved, type ImagePullProgress, type PulledImage, type TagResolution } from '../p2p/content/image-puller.js'
import type { ImageReference } from '../p2p/content/reference.js'
import { ObjectStore, type FetchedObject, type GetResult } from '../p2p/content/objects.js'
import type { BoltLibp2p } from '../p2p/node.js'
import type { Config } from './config.js'
import type { Logger } from './logger.js'
import type { MetricSources } from './metrics.js'
import type { NodeRuntime } from '../native/index.js'
import { DEMO_REF, LOCAL_REF_PREFIX, writeDemoLayout } from './demo-image.js'
import { locateObject, readObjectMeta, type ObjectLocatedBy, type ObjectMetaKv } from './object-location.js'
import { PullsInProgress, type PullStarter } from './pulls-in-progress.js'

export interface ObjectGetResult extends GetResult {
  /** `raft`: the holders came from the object's record in the Raft state; `members`: live members and DHT providers were asked. */
  locatedBy: ObjectLocatedBy
  /** Peers asked, in order. */
  asked: string[]
}

export interface ContentHostInit {
  dataDir: string
  config: Config['content']
  libp2p: BoltLibp2p
  guard: (h: StreamHandler) => StreamHandler
  openStream: (peerId: string, protocol: string, signal: AbortSignal) => Promise<import('@libp2p/interface').Stream>
  /** Members to pull pieces and objects from (see pieceSources). */
  candidates: () => string[]
  /** Members to place object replicas on: alive ones only. */
  replicaTargets: () => string[]
  log: Logger
}

/** id and SWIM state of each member, as MembershipHost.view() gives them. */
type MemberStates = ReadonlyArray<{ id: string, state: string }>

/**
 * Members a pull may take pieces from: alive ones and suspects. SWIM
 * suspects a member that answers its probes late, as members busy serving
 * pieces do (8 agents pulling at once suspected each other several times a
 * pull); left out at a pull's start, such a member was never asked, and
 * pieces it held came from the registry again. A member declared dead
 * stops being a source at once (memberState).
 */
export function pieceSources (view: MemberStates, self: string): string[] {
  return view.filter(m => (m.state === 'alive' || m.state === 'suspect') && m.id !== self).map(m => m.id)
}

/** Members alive now, this node left out. */
export function aliveMembers (view: MemberStates, self: string): string[] {
  return view.filter(m => m.state === 'alive' && m.id !== self).map(m => m.id)
}

export class ContentHost {
  store!: BlobStore
  registry!: RegistryClient
  exchange!: PieceExchange
  puller!: ImagePuller
  objects!: ObjectStore
  /** Pulls running now, API- and capsule-started alike (the dashboard shows them). */
  readonly pulls = new PullsInProgress()
  /** Built-here ref (bolt.local/…, never moves) → runtime image id. */
  private readonly preparedLocal = new Map<string, Promise<string>>()
  /** Manifest digest → runtime image id, for pulled images prepared for the runtime (one entry per image on this node). */
  private readonly preparedIds = new Map<string, string>()
  /**
   * Ref → what its tag last resolved to here: the next start asks the
   * registry only whether the tag still names it (one HEAD), and a start
   * while the registry is unreachable runs its manifest digest.
   */
  private readonly lastResolved = new Map<string, TagResolution>()
  /** Resolutions in flight per ref: replicas starting together share one. */
  private readonly resolving = new Map<string, Promise<string>>()

  /**
   * Cluster images (`bolt.local/…` pushed to the cluster registry, see
   * agent/registry/): set by the agent once the registry exists.
   */
  clusterImages: {
    has: (ref: string, signal?: AbortSignal) => Promise<boolean>
    exportLayout: (ref: string, dir: string, signal?: AbortSignal) => Promise<{ digest: string }>
    resolve: (repo: string, reference: string, signal?: AbortSignal) => Promise<ClusterResolved | undefined>
  } | undefined

  constructor (private readonly o: ContentHostInit) {}

  async start (): Promise<void> {
    const o = this.o
    this.store = await BlobStore.open({ root: join(o.dataDir, 'blobs'), pieceSize: o.config.piece_size, log: msg => { o.log.warn(msg) }, ...(o.config.disk_quota_bytes > 0 ? { quotaBytes: o.config.disk_quota_bytes } : {}) })
    this.registry = new RegistryClient({ insecure: o.config.insecure_registries, log: msg => { o.log.warn(msg) } })
    const lp = o.libp2p
    // The exchange registers its own handler; hand it a libp2p whose handle() puts admission in front.
    const guarded = {
      peerId: lp.peerId,
      getConnections: lp.getConnections.bind(lp),
      dialProtocol: lp.dialProtocol.bind(lp),
      unhandle: lp.unhandle.bind(lp),
      handle: async (protocol: string | string[], handler: StreamHandler, opts?: Parameters<BoltLibp2p['handle']>[2]) => { await lp.handle(protocol, o.guard(handler), opts) }
    } as unknown as ConstructorParameters<typeof PieceExchange>[0]['libp2p']
    this.exchange = new PieceExchange({
      libp2p: guarded,
      store: this.store,
      providers: new DhtProviderSource(lp, { members: () => o.candidates().length + 1 }),
      uploadSlots: o.config.upload_slots,
      pieceSize: o.config.piece_size,
      openStream: o.openStream
    })
    await this.exchange.start()
    // `pull` of a cluster image (bolt.local/…) asks the cluster registry, once the agent has set it.
    const cluster = { host: LOCAL_REF_PREFIX.replace(/\/$/, ''), resolve: async (ref: ImageReference, signal?: AbortSignal) => await this.clusterImages?.resolve(ref.repository, ref.digest ?? ref.tag ?? 'latest', signal) }
    this.puller = new ImagePuller({ store: this.store, registry: this.registry, exchange: this.exchange, candidates: o.candidates, cluster })
    this.objects = new ObjectStore({
      store: this.store,
      exchange: this.exchange,
      candidates: o.candidates,
      // No free-space figure is gossiped yet: spread replicas over live members at random.
      chooseReplicas: (count, { exclude }) => o.replicaTargets().filter(id => !exclude.includes(id)).sort(() => Math.random() - 0.5).slice(0, count)
    })
  }

  /** Membership news: dead members are dropped as piece sources at once. */
  memberState (id: string, state: string): void {
    if (state === 'dead' || state === 'left') this.exchange?.markDead(id)
    else if (state === 'alive') this.exchange?.markAlive(id)
  }

  counters (): { bytesFromPeers: number, bytesFromRegistry: number, bytesServed: number } {
    return this.exchange?.counters ?? { bytesFromPeers: 0, bytesFromRegistry: 0, bytesServed: 0 }
  }

  /** The content metrics, read when scraped (see metrics.ts). */
  metrics (): NonNullable<MetricSources['extra']> {
    return [{
      name: 'bolt_content_bytes_total',
      help: 'Blob bytes by source: pulled from peers, from registries, and served to peers',
      labels: ['source'],
      read: () => {
        const c = this.counters()
        return [{ labels: { source: 'peers' }, value: c.bytesFromPeers }, { labels: { source: 'registry' }, value: c.bytesFromRegistry }, { labels: { source: 'served' }, value: c.bytesServed }]
      }
    }, {
      name: 'bolt_content_served_pieces_total',
      help: 'Pieces read to serve peers and to stream to mirror clients, by where the bytes came from: memory (recently received or read) or disk',
      labels: ['from', 'for'],
      read: () => {
        const counts = this.exchange?.recent.counts
        return (['peers', 'mirror'] as const).flatMap(reader => [
          { labels: { from: 'memory', for: reader }, value: counts?.[reader].hits ?? 0 },
          { labels: { from: 'disk', for: reader }, value: counts?.[reader].misses ?? 0 }
        ])
      }
    }]
  }

  async stop (leaving = false): Promise<void> {
    // Stopping goes on whatever fails here: provider records not withdrawn expire with their TTL.
    if (leaving) await Promise.resolve(this.exchange?.withdrawAll()).catch((err: Error) => { this.o.log.warn({ err: err.message }, 'content: withdrawing provider records on leave failed; they expire with their TTL') })
    await this.exchange?.stop().catch((err: Error) => { this.o.log.warn({ err: err.message }, 'content: stopping the piece exchange failed') })
  }

  /**
   * `object get`: the holders recorded in the Raft state are asked first;
   * live members and DHT providers only when there is no usable record or
   * the recorded holders could not deliver. Writes the object to `dest`.
   */
  async getObject (id: string, dest: string, kv: ObjectMetaKv, signal?: AbortSignal): Promise<ObjectGetResult> {
    return await this.fromHolders(id, kv, signal, async opts => await this.objects.getObject(id, dest, opts))
  }

  /** As `getObject`, but leaves the object in the store for `objects.readObject` (the API streams it to the client). */
  async fetchObject (id: string, kv: ObjectMetaKv, signal?: AbortSignal): Promise<FetchedObject & ObjectGetResult> {
    return await this.fromHolders(id, kv, signal, async opts => await this.objects.fetchObject(id, opts))
  }

  private async fromHolders<T extends GetResult> (id: string, kv: ObjectMetaKv, signal: AbortSignal | undefined, fetch: (opts: { candidates: string[], signal?: AbortSignal }) => Promise<T>): Promise<T & ObjectGetResult> {
    const alive = this.o.candidates()
    const self = this.exchange.self
    const located = locateObject(await readObjectMeta(kv, id, signal), alive, self)
    const opts = { ...(signal !== undefined ? { signal } : {}) }
    if (located.locatedBy === 'raft') {
      try {
        return { ...await fetch({ ...opts, candidates: located.candidates }), locatedBy: 'raft', asked: located.candidates }
      } catch (err) {
        if (signal?.aborted === true) throw err
        this.o.log.warn({ id, holders: located.candidates, err: (err as Error).message }, 'object get: the holders in the Raft state did not deliver; asking every live member')
      }
    }
    const fallback = locateObject(undefined, alive, self)
    return { ...await fetch({ ...opts, candidates: fallback.candidates }), locatedBy: 'members', asked: fallback.candidates }
  }

  async pull (ref: string, onProgress?: (p: ImagePullProgress) => void, signal?: AbortSignal, startedBy: PullStarter = 'api'): Promise<PulledImage> {
    const tracked = this.pulls.begin(ref, startedBy)
    try {
      return await this.puller.pull(ref, { ...(signal !== undefined ? { signal } : {}), onProgress: (p) => { tracked.update(p); onProgress?.(p) } })
    } finally {
      tracked.end()
    }
  }

  /**
   * Pulls (peers first) and prepares an image for the runtime; called at
   * every capsule (re)start. A tag is resolved again each time, so a capsule
   * started after the tag moved runs the image it names now (as `docker run
   * --pull always` would); what is already prepared for that digest is reused.
   * For a tag resolved here before, that is one HEAD request (see resolveTag).
   * When the tag cannot be resolved (registry down, node offline), the image
   * it last resolved to here is started, with a warning.
   */
  async prepareForRuntime (runtime: NodeRuntime, ref: string, signal: AbortSignal): Promise<string> {
    if (ref.startsWith(LOCAL_REF_PREFIX)) {
      // The demo is built here unless the cluster holds an image by that name; any other bolt.local/ ref is a cluster image.
      // A cluster that cannot answer (has() failed) counts as not holding it.
      if (ref === DEMO_REF && (this.clusterImages === undefined || !await this.clusterImages.has(ref, signal).catch(() => false))) return await this.prepareLocal(runtime, ref, signal)
      if (this.clusterImages !== undefined) return await this.prepareCluster(runtime, ref, signal)
      return await this.prepareLocal(runtime, ref, signal)
    }
    for (;;) {
      const shared = this.resolving.get(ref)
      if (shared === undefined) break
      try {
        return await shared
      } catch (err) {
        // The start that began it was stopped: this one resolves for itself.
        if (signal.aborted || (err as Error).name !== 'AbortError') throw err
      }
    }
    const p = this.resolveAndPrepare(runtime, ref, signal).finally(() => { this.resolving.delete(ref) })
    this.resolving.set(ref, p)
    return await p
  }

  private async resolveAndPrepare (runtime: NodeRuntime, ref: string, signal: AbortSignal): Promise<string> {
    // The tag still names the image prepared here, and `images` still lists it under that digest:
    // one HEAD request, and none of a pull's pinning and index writes (two synced files).
    // The index is read beside the HEAD: on a busy node its read waits for
    // libuv's thread pool (Raft's fsyncs) about as long as the request does.
    const last = this.lastResolved.get(ref)
    const listed = last !== undefined && this.preparedIds.has(last.digest) ? this.puller.lookup(ref) : undefined
    void listed?.catch(() => {}) // awaited below where it matters; when the tag moved or cannot be resolved, its outcome is not needed
    let now: TagResolution
    try {
      now = await this.puller.resolveTag(ref, signal, last)
    } catch (err) {
      return this.lastPrepared(ref, err as Error, signal)
    }
    const prepared = this.preparedIds.get(now.digest)
    if (prepared !== undefined && listed !== undefined && last?.digest === now.digest && (await listed)?.digest === now.digest) {
      this.lastResolved.set(ref, now)
      return prepared
    }
    let pulled: PulledImage
    try {
      pulled = await this.pull(ref, undefined, signal, 'capsule')
    } catch (err) {
      return this.lastPrepared(ref, err as Error, signal)
    }
    const known = this.preparedIds.get(pulled.digest)
    if (known !== undefined) {
      this.lastResolved.set(ref, resolution(now, pulled.digest))
      return known
    }
    const dir = await mkdtemp(join(this.o.dataDir, 'layout-'))
    try {
      const { digest } = await this.puller.exportImageLayout(ref, dir)
      const img = await runtime.prepareImage(dir, ref, signal)
      this.o.log.info({ ref, digest, fromPeers: pulled.bytesFromPeers, fromRegistry: pulled.bytesFromRegistry }, 'image ready')
      // The digest exported, which a concurrent `pull` of the same ref may have moved past `pulled`.
      this.preparedIds.set(digest, img.id)
      this.lastResolved.set(ref, resolution(now, digest))
      return img.id
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  /** When the tag cannot be resolved: the image it last resolved to here, with a warning; else `err`. */
  private lastPrepared (ref: string, err: Error, signal: AbortSignal): string {
    const last = this.lastResolved.get(ref)?.digest
    const id = last === undefined ? undefined : this.preparedIds.get(last)
    if (signal.aborted || id === undefined) throw err
    this.o.log.warn({ ref, digest: last, err: err.message }, 'image: cannot resolve the tag again; starting the image it last resolved to')
    return id
  }

  /** A cluster image: manifest from the Raft state, blobs from this node or its peers (never a registry); prepared once per digest. */
  private async prepareCluster (runtime: NodeRuntime, ref: string, signal: AbortSignal): Promise<string> {
    const images = this.clusterImages as NonNullable<ContentHost['clusterImages']>
    const dir = await mkdtemp(join(this.o.dataDir, 'layout-'))
    try {
      const { digest } = await images.exportLayout(ref, dir, signal)
      const known = this.preparedIds.get(digest)
      if (known !== undefined) return known
      const img = await runtime.prepareImage(dir, ref, signal)
      this.o.log.info({ ref, digest }, 'cluster image ready')
      this.preparedIds.set(digest, img.id)
      return img.id
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  /**
   * `rmi` of the demo image, which is built here, not pulled (so `images`
   * does not list it): its prepared copy in the runtime goes. Throws the
   * runtime's CapsuleStateError while a capsule here still holds it; false
   * when there is no copy. The next capsule that names it builds it again.
   */
  async removeDemo (runtime: NodeRuntime): Promise<boolean> {
    const ids = (await runtime.listImages()).filter(i => i.ref === DEMO_REF).map(i => i.id)
    for (const id of ids) await runtime.removeImage(id)
    this.preparedLocal.delete(DEMO_REF)
    for (const [digest, id] of this.preparedIds) if (ids.includes(id)) this.preparedIds.delete(digest)
    return ids.length > 0
  }

  /** Built on this node from the host's busybox (bolt-agent dev's demo), never pulled: prepared once per ref. */
  private async prepareLocal (runtime: NodeRuntime, ref: string, signal: AbortSignal): Promise<string> {
    let p = this.preparedLocal.get(ref)
    if (p === undefined) {
      p = (async () => {
        const dir = await mkdtemp(join(this.o.dataDir, 'layout-'))
        try {
          await writeDemoLayout(dir, ref)
          return (await runtime.prepareImage(dir, ref, signal)).id
        } finally {
          await rm(dir, { recursive: true, force: true })
        }
      })()
      this.preparedLocal.set(ref, p)
      p.catch(() => { this.preparedLocal.delete(ref) })
    }
    return await p
  }
}

/**
 * What to remember for a tag whose image `digest` was prepared: `resolved`
 * when the pull took the same manifest; else (the tag moved between the
 * resolve and the pull) the manifest digest as what the tag names, which a
 * single-platform tag's HEAD then matches, and a multi-platform one's never
 * does, so its next start fetches the manifest again.
 */
function resolution (resolved: TagResolution, digest: string): TagResolution {
  return resolved.digest === digest ? resolved : { tag: digest, digest }
}
