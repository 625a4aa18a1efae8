// Read-only OCI distribution endpoint on each agent: Docker, containerd,
// podman and skopeo pull through it unchanged. Blobs come from the local
// store, then from peers through the piece exchange, then from the upstream;
// a blob being pulled is streamed piece by piece in order, and its last piece
// is sent only once the pull has checked the whole blob against the digest
// asked for, with no bytes sent before a failed check — so a client never
// completes a response with bad bytes (the socket is destroyed).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { BlobStore } from '../../p2p/content/blob-store.js'
import { isIndexMediaType, isManifestMediaType, manifestMediaType, MAX_MANIFEST_BYTES, MT_OCI_MANIFEST, parseImageIndex, parseImageManifest } from '../../p2p/content/oci.js'
import type { PieceExchange } from '../../p2p/content/piece-exchange.js'
import { formatReference, type ImageReference } from '../../p2p/content/reference.js'
import type { RegistryClient } from '../../p2p/content/registry-client.js'
import { closeHttp, HostCheck, listenHttp } from '../http-host.js'
import { MirrorBindRefusedError, MirrorRequestError } from './errors.js'
import { MirrorQuota } from './mirror-quota.js'
import { allowedRegistries, checkRegistryAllowed, isLoopbackListen, parseMirrorPath, parseNamespace, parseRange, splitHostPort, upstreamReference } from './request.js'
import { ReadBuffers, sendFileRange, SPARE_READ_BUFFERS } from './read-buffers.js'
import { newMirrorStats, type MirrorStats } from './stats.js'
import { streamWhilePulling } from './stream-while-pulling.js'
import { FileTagResolutions, tagKey, type TagResolutions } from './tag-cache.js'

/** Blob sizes learnt from manifests served (a blob request carries no size). */
export const MAX_KNOWN_SIZES = 100_000
/** Blobs of one manifest prefetched at most (a client asks for them next; starting them together lets pulling peers split the upstream). */
export const MAX_PREFETCH_BLOBS = 16
/** How long a blob request waits for the size from peers before asking the upstream. */
export const SIZE_PROBE_TIMEOUT_MS = 5_000

export interface MirrorLog {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  debug: (obj: object, msg: string) => void
}

export interface MirrorServerInit {
  store: BlobStore
  registry: RegistryClient
  exchange: PieceExchange
  /** Live cluster members to ask for pieces directly. */
  candidates: () => string[]
  /** `host:port`; port 0 picks a free one. */
  listen: string
  /** Default upstream for requests without `ns=` (registry-1.docker.io). */
  upstream: string
  /** Serve a tag's last known resolution when the upstream fails. */
  serveStaleTags: boolean
  /**
   * Start pulling every blob of an image manifest as soon as a client gets
   * the manifest (the agent's default is on, `[mirror] prefetch`; absent here: off).
   */
  prefetch?: boolean
  /** Allow binding a non-loopback address. */
  allowRemote?: boolean
  /** Registries (host[:port]) `ns=` may name; default the upstream and Docker Hub (the upstream is always allowed). */
  registries?: string[]
  /** Hosts `ns=` may name by a literal loopback, private or link-local address (the registry client's guard checks every fetch). */
  privateHosts?: string[]
  /** `Host` names accepted besides loopback names and the bound address. */
  allowedHosts?: string[]
  /** Bytes of blobs no capsule or object pins that the mirror keeps; 0 or absent: no limit (see mirror-quota.ts). */
  diskQuotaBytes?: number
  /** The cluster registry (agent/registry/): pushes and cluster images; it answers first, false lets the mirror answer. */
  push?: { handle: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> }
  /** Where tag resolutions are kept; default a JSON file in the blob store root. */
  tags?: TagResolutions
  log?: MirrorLog
}

/**
 * Who answered a manifest request (the `X-Bolt-Tag-Source` header): for a
 * tag, `upstream` (resolved live), `cluster` (the cluster's last known
 * resolution in the Raft state, upstream down) or `node` (this node's own
 * last resolution, upstream down and Raft without a newer one); for a
 * digest, `local`, `peers` or `upstream`.
 */
export type ManifestSource = 'upstream' | 'cluster' | 'node' | 'local' | 'peers'

interface ServedManifest { bytes: Uint8Array, digest: string, mediaType: string, source: ManifestSource }

/** This node's own tag resolutions: a JSON file in the blob store root. */
export function nodeTagFile (store: BlobStore): FileTagResolutions {
  return new FileTagResolutions(`${store.root}/mirror-tags.json`, `${store.root}/tmp`)
}

export class MirrorServer {
  readonly stats: MirrorStats = newMirrorStats()
  /** Buffers of this mirror's responses from the store. */
  readonly readBuffers = new ReadBuffers(SPARE_READ_BUFFERS)
  private server: Server | undefined
  private readonly tags: TagResolutions
  private readonly knownSizes = new Map<string, number>()
  private readonly shutdown = new AbortController()
  private readonly background = new Set<Promise<unknown>>()
  /** Blob pulls this mirror started, by digest (a request for one joins it). */
  private readonly pulling = new Map<string, Promise<void>>()
  private readonly hosts: HostCheck
  private readonly registries: Set<string>
  private readonly quota: MirrorQuota | undefined
  url = ''

  constructor (private readonly init: MirrorServerInit) {
    this.tags = init.tags ?? nodeTagFile(init.store)
    this.hosts = new HostCheck(init.allowedHosts)
    this.registries = allowedRegistries(init.registries, init.upstream)
    this.quota = init.diskQuotaBytes !== undefined && init.diskQuotaBytes > 0 ? new MirrorQuota(init.store, init.diskQuotaBytes) : undefined
  }

  /** Binds and serves; resolves with the base URL (`http://127.0.0.1:5050`). */
  async start (): Promise<string> {
    const { host, port } = splitHostPort(this.init.listen)
    if (!isLoopbackListen(this.init.listen) && this.init.allowRemote !== true) {
      throw new MirrorBindRefusedError(`refusing to serve the registry mirror on ${this.init.listen}: it is not a loopback address (set mirror.allow_remote = true to expose it)`)
    }
    const server = createServer((req, res) => { void this.handle(req, res) })
    server.keepAliveTimeout = 65_000
    this.url = await listenHttp(server, host, port, this.hosts)
    this.server = server
    return this.url
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    const s = this.server
    this.server = undefined
    await closeHttp(s)
    await Promise.allSettled([...this.background])
  }

  private track (p: Promise<unknown>): void {
    this.background.add(p)
    void p.finally(() => this.background.delete(p))
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const signal = AbortSignal.any([this.shutdown.signal])
    try {
      // Before anything else: a page rebound to this address names its own host.
      if (!this.hosts.allows(req.headers.host)) {
        this.stats.requests.other++
        throw new MirrorRequestError(421, 'DENIED', `Host ${JSON.stringify((req.headers.host ?? '').slice(0, 100))} is not this mirror's address (add it to [mirror] allowed_hosts if clients use that name)`)
      }
      const url = new URL(req.url ?? '/', 'http://mirror')
      if (this.init.push !== undefined && await this.init.push.handle(req, res, url)) return
      const head = req.method === 'HEAD'
      if (req.method !== 'GET' && !head) {
        this.stats.requests.other++
        throw new MirrorRequestError(405, 'UNSUPPORTED', `${req.method ?? ''} is not supported: this mirror is read-only`)
      }
      const route = parseMirrorPath(url.pathname)
      if (route.kind === 'base') {
        this.stats.requests.base++
        const body = Buffer.from('{}')
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'docker-distribution-api-version': 'registry/2.0' })
        res.end(head ? undefined : body)
        return
      }
      const ns = url.searchParams.get('ns')
      const ref = upstreamReference(route.name, ns === null || ns === '' ? null : parseNamespace(ns, this.init.privateHosts), this.init.upstream)
      checkRegistryAllowed(ref.registry, this.registries)
      if (route.kind === 'tags') {
        // Read-only: the tags this node and the cluster have resolved (no upstream listing).
        this.stats.requests.other++
        const tags = await this.tags.list?.(`${ref.registry}/${ref.repository}`) ?? []
        const body = Buffer.from(JSON.stringify({ name: route.name, tags }))
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'docker-distribution-api-version': 'registry/2.0' })
        res.end(head ? undefined : body)
        return
      }
      if (route.kind === 'manifest') {
        this.stats.requests.manifest++
        const m = await this.manifest(ref, route.reference, signal)
        if (this.init.prefetch === true) this.prefetch(ref, m)
        res.writeHead(200, {
          'content-type': m.mediaType,
          'content-length': m.bytes.length,
          'docker-content-digest': m.digest,
          'docker-distribution-api-version': 'registry/2.0',
          'x-bolt-tag-source': m.source
        })
        res.end(head ? undefined : m.bytes)
        return
      }
      this.stats.requests.blob++
      await this.blob(ref, route.digest, req, res, head, signal)
    } catch (err) {
      this.fail(res, err as Error)
    }
  }

  private fail (res: ServerResponse, err: Error): void {
    if (res.headersSent) {
      // Too late for a status: the client sees the body end early. Say why here.
      this.init.log?.warn({ err: err.message }, 'mirror response cut short after its head was sent')
      res.destroy(err)
      return
    }
    let status = 500
    let code = 'UNKNOWN'
    if (err instanceof MirrorRequestError) {
      status = err.status
      code = err.code
    } else if (err.name === 'RegistryAuthError') {
      status = 403
      code = 'DENIED'
    } else if (err.name === 'MirrorQuotaExceededError') {
      status = 507
      code = 'DENIED'
    } else if (err.name === 'RegistryError' || err.name === 'PullFailedError' || err.name === 'InsecureRegistryError' || err.name === 'UpstreamAddressRefusedError') {
      status = 502
      code = 'UNAVAILABLE'
    }
    if (status >= 500) this.init.log?.warn({ err: err.message }, 'mirror request failed')
    const body = Buffer.from(JSON.stringify({ errors: [{ code, message: err.message, detail: null }] }))
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, 'docker-distribution-api-version': 'registry/2.0', ...(err as { headers?: Record<string, string> }).headers })
    res.end(body)
  }

  // ---- manifests -----------------------------------------------------------

  private async manifest (ref: ImageReference, reference: string, signal: AbortSignal): Promise<ServedManifest> {
    const { store, registry } = this.init
    if (reference.startsWith('sha256:')) {
      if (store.hasSync(reference)) return this.remember(await store.readAll(reference), reference, null, 'local')
      // Peers first (content-addressed: any holder will do), then the upstream.
      const fromPeers = await this.manifestFromPeers(reference, signal).catch((err: Error) => { this.init.log?.debug({ digest: reference, err: err.message }, 'manifest not from peers: asking the upstream'); return undefined })
      if (fromPeers !== undefined) return this.remember(fromPeers, reference, null, 'peers')
      try {
        const m = await registry.getManifestBytes(ref, reference, signal)
        await store.put(m.bytes, m.digest)
        return this.remember(m.bytes, m.digest, m.mediaType, 'upstream')
      } catch (err) {
        throw this.notFound(err as Error, 'MANIFEST_UNKNOWN', `manifest ${reference} of ${formatReference(ref)} is not on this node, its peers or the upstream`)
      }
    }
    const key = tagKey(ref.registry, ref.repository, reference)
    try {
      const m = await registry.getManifestBytes(ref, reference, signal)
      await store.put(m.bytes, m.digest)
      await this.tags.set(key, { digest: m.digest, mediaType: m.mediaType, at: Date.now() }).catch((err: Error) => { this.init.log?.warn({ ref: key, digest: m.digest, err: err.message }, 'mirror: cannot record a tag resolution (served, not kept for upstream outages)') })
      await this.pinImage(ref, reference, m.digest, m.bytes)
      return this.remember(m.bytes, m.digest, m.mediaType, 'upstream')
    } catch (err) {
      const e = err as Error
      const upstreamDown = e.name === 'RegistryError' && ((e as { status?: number }).status === undefined || ((e as { status?: number }).status ?? 0) >= 500)
      if (!upstreamDown || !this.init.serveStaleTags) throw this.notFound(e, 'MANIFEST_UNKNOWN', `manifest ${formatReference({ ...ref, tag: reference })} unknown upstream`)
      const last = await this.tags.get(key)
      if (last === undefined) throw e
      const bytes = store.hasSync(last.digest) ? await store.readAll(last.digest) : await this.manifestFromPeers(last.digest, signal)
      if (bytes === undefined) throw e
      this.stats.staleTags++
      const source = last.source ?? 'node'
      this.init.log?.info({ ref: key, digest: last.digest, source, err: e.message }, 'upstream down: serving the last known resolution of a tag')
      return this.remember(bytes, last.digest, last.mediaType, source)
    }
  }

  private notFound (err: Error, code: string, message: string): Error {
    const status = (err as { status?: number }).status
    if (err.name === 'RegistryError' && status === 404) return new MirrorRequestError(404, code, message)
    if (err.name === 'DigestMismatchError') return new MirrorRequestError(502, 'UNAVAILABLE', err.message)
    return err
  }

  /** A manifest blob from peers only (they hold what the puller or a mirror stored). */
  private async manifestFromPeers (digest: string, signal: AbortSignal): Promise<Uint8Array | undefined> {
    const { store, exchange } = this.init
    const size = await exchange.probeSize(digest, this.init.candidates(), AbortSignal.any([signal, AbortSignal.timeout(SIZE_PROBE_TIMEOUT_MS)]))
    if (size === undefined || size > MAX_MANIFEST_BYTES) return undefined
    await exchange.pull(digest, { size, candidates: this.init.candidates(), signal })
    return await store.readAll(digest)
  }

  /** Records blob sizes named by a manifest and works out its media type. */
  private remember (bytes: Uint8Array, digest: string, mediaType: string | null, source: ServedManifest['source']): ServedManifest {
    const mt = mediaType ?? manifestMediaType(bytes, null)
    try {
      if (isManifestMediaType(mt)) {
        const m = parseImageManifest(bytes)
        for (const d of [m.config, ...m.layers]) this.knowSize(d.digest, d.size)
      } else if (isIndexMediaType(mt)) {
        for (const d of parseImageIndex(bytes).manifests) this.knowSize(d.digest, d.size)
      }
    } catch { /* not parseable: serve it as is */ }
    return { bytes, digest, mediaType: mt === '' ? MT_OCI_MANIFEST : mt, source }
  }

  private knowSize (digest: string, size: number): void {
    if (this.knownSizes.size >= MAX_KNOWN_SIZES) {
      const first = this.knownSizes.keys().next().value
      if (first !== undefined) this.knownSizes.delete(first)
    }
    this.knownSizes.set(digest, size)
  }

  /** Pins a tag's manifest and blobs under `mirror:<ref>` so quota eviction spares images served recently by tag. */
  private async pinImage (ref: ImageReference, tag: string, digest: string, bytes: Uint8Array): Promise<void> {
    try {
      const digests = [digest]
      const mt = manifestMediaType(bytes, null)
      if (isManifestMediaType(mt)) {
        const m = parseImageManifest(bytes)
        digests.push(m.config.digest, ...m.layers.map(l => l.digest))
      }
      await this.init.store.pin(`mirror:${formatReference({ ...ref, tag })}`, digests)
    } catch { /* pinning is best effort */ }
  }

  // ---- blobs ------------------------------------------------------------------

  private async blobSize (ref: ImageReference, digest: string, signal: AbortSignal): Promise<number> {
    const local = await this.init.store.stat(digest)
    if (local !== undefined) return local.size
    const known = this.knownSizes.get(digest)
    if (known !== undefined) return known
    const fromPeers = await this.init.exchange.probeSize(digest, this.init.candidates(), AbortSignal.any([signal, AbortSignal.timeout(SIZE_PROBE_TIMEOUT_MS)])).catch(() => undefined) // no peer answered in time: the upstream says
    if (fromPeers !== undefined) return fromPeers
    let res: Response
    this.init.log?.debug({ digest, ref: formatReference(ref) }, 'blob size unknown here and at peers: asking the upstream')
    try {
      res = await this.init.registry.openBlob(ref, digest, { signal })
    } catch (err) {
      throw this.notFound(err as Error, 'BLOB_UNKNOWN', `blob ${digest} of ${formatReference(ref)} is not on this node, its peers or the upstream`)
    }
    await res.body?.cancel().catch(() => {}) // only the headers count; a body already gone is fine
    const len = Number(res.headers.get('content-length') ?? NaN)
    if (!Number.isSafeInteger(len) || len < 0) throw new MirrorRequestError(502, 'UNAVAILABLE', `upstream did not say the size of blob ${digest}`)
    this.knowSize(digest, len)
    return len
  }

  private async blob (ref: ImageReference, digest: string, req: IncomingMessage, res: ServerResponse, head: boolean, signal: AbortSignal): Promise<void> {
    const { store } = this.init
    const size = await this.blobSize(ref, digest, signal)
    const range = parseRange(typeof req.headers.range === 'string' ? req.headers.range : undefined, size)
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'docker-content-digest': digest,
      'accept-ranges': 'bytes',
      'docker-distribution-api-version': 'registry/2.0'
    }
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${size}`, 'content-length': 0 })
      res.end()
      return
    }
    if (head) {
      res.writeHead(200, { ...headers, 'content-length': size })
      res.end()
      return
    }
    const wasLocal = store.hasSync(digest)
    if (!wasLocal) {
      // Room first, so a blob over the quota is a 507, not a cut response.
      await this.quota?.reserve(digest, size)
      if (range !== undefined || size === 0) {
        // A range of a blob not held yet: bytes of a range cannot be checked
        // alone, so the whole blob is pulled (and verified) first.
        await this.pullBlob(ref, digest, size, signal)
      } else {
        try {
          await streamWhilePulling({ store, exchange: this.init.exchange, stats: this.stats, log: this.init.log, pull: async () => await this.pullBlob(ref, digest, size, signal) }, digest, size, res, headers)
        } finally {
          // pullBlob releases its reservation when it settles; one never started has nothing to wait for.
          if (!this.pulling.has(digest)) this.quota?.release(digest)
        }
        return
      }
    }
    const start = range?.start ?? 0
    const end = range?.end ?? size - 1
    const len = size === 0 ? 0 : end - start + 1
    if (range !== undefined) res.writeHead(206, { ...headers, 'content-length': len, 'content-range': `bytes ${start}-${end}/${size}` })
    else res.writeHead(200, { ...headers, 'content-length': len })
    if (len === 0) { res.end(); return }
    const fh = await store.openRead(digest)
    try {
      await sendFileRange(fh, start, len, res, this.readBuffers, n => { if (wasLocal) this.stats.bytes.local += n })
    } catch (err) {
      this.stats.aborted++
      this.init.log?.warn({ digest, size, err: (err as Error).message }, 'mirror: reading a stored blob failed mid-response; the client reads an early end of the body')
      res.destroy(err as Error)
    } finally {
      await fh.close()
    }
  }

  /**
   * Starts pulling the blobs of an image manifest the client was just given:
   * it asks for them next, and pulls started together across nodes split
   * the upstream's pieces between them (as ImagePuller does).
   */
  private prefetch (ref: ImageReference, m: ServedManifest): void {
    if (!isManifestMediaType(m.mediaType)) return
    let blobs: Array<{ digest: string, size: number }>
    try {
      const parsed = parseImageManifest(m.bytes)
      blobs = [parsed.config, ...parsed.layers]
    } catch { return } // unreadable as an image manifest: nothing to prefetch, the client gets the bytes as they are
    for (const b of blobs.slice(0, MAX_PREFETCH_BLOBS)) {
      if (this.init.store.hasSync(b.digest) || this.pulling.has(b.digest)) continue
      this.pullBlob(ref, b.digest, b.size, this.shutdown.signal).catch((err: Error) => { this.init.log?.debug({ digest: b.digest, err: err.message }, 'mirror: prefetch failed; the blob GET pulls it') })
    }
  }

  /** Starts (or joins) the pull of a blob into the store; it goes on even if the client leaves. */
  private pullBlob (ref: ImageReference, digest: string, size: number, signal: AbortSignal): Promise<void> {
    const running = this.pulling.get(digest)
    if (running !== undefined) return running
    let usedUpstream = false
    const started = performance.now()
    const room = this.quota?.reserve(digest, size) ?? Promise.resolve()
    const p = room.then(async () => await this.init.exchange.pull(digest, {
      size,
      candidates: this.init.candidates(),
      registry: async (r, s, into) => {
        usedUpstream = true
        return await this.init.registry.getBlobRange(ref, digest, r.start, r.length, { signal: s, into })
      },
      signal
    })).then(stats => {
      this.stats.bytes.peers += stats.bytesFromPeers
      this.stats.bytes.upstream += stats.bytesFromRegistry
      if (usedUpstream) this.stats.upstreamFallbacks++
      this.init.log?.debug({ digest, fromPeers: stats.bytesFromPeers, fromUpstream: stats.bytesFromRegistry, ms: Math.round(performance.now() - started) }, 'mirror pulled a blob')
    }).finally(() => { this.pulling.delete(digest); this.quota?.release(digest) })
    this.pulling.set(digest, p)
    this.track(p.catch(() => {})) // tracked for shutdown only: callers awaiting p get the error
    return p
  }
}
