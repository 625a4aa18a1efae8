// The cluster registry on the mirror's listener: the OCI distribution push
// API (blob uploads, monolithic, chunked and resumable, cross-repository
// mounts; manifest PUT by tag and by digest; tag list; DELETE) and reads of
// cluster images. A request is for the cluster when it writes, carries the
// push credential, names `ns=bolt.local`, or names a repository the cluster
// has tags for; anything else falls through to the mirror (handle → false).
//
// Nothing is stored for a request without the credential (401 before the
// body is read), for a blob whose bytes do not match its digest
// (DIGEST_INVALID), or for a manifest naming a blob the cluster does not
// hold (MANIFEST_BLOB_UNKNOWN). A manifest PUT is acknowledged only after
// its blobs are held by K members (this one and K-1 others) and its record
// and tag are committed in Raft.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { BlobStore } from '../../p2p/content/blob-store.js'
import type { PieceExchange } from '../../p2p/content/piece-exchange.js'
import { MAX_MANIFEST_BYTES, MT_OCI_INDEX } from '../../p2p/content/oci.js'
import { MirrorRequestError } from '../mirror/errors.js'
import { MAX_KNOWN_SIZES } from '../mirror/mirror-server.js'
import { newMirrorStats } from '../mirror/stats.js'
import { streamWhilePulling } from '../mirror/stream-while-pulling.js'
import { challenge, issueToken, mayPush, presented } from './auth.js'
import { CLUSTER_REGISTRY, MAX_INLINE_MANIFEST, type Catalog, type CatalogImage, type ManifestRecord } from './catalog.js'
import { ClusterContent } from './cluster-content.js'
import { RegistryGc } from './gc.js'
import { withCurrentHolders } from './replica-count.js'
import { checkPushedManifest, type CheckedManifest } from './manifest-check.js'
import { replicate } from './replicate.js'
import { checkDigest, parsePushPath, type PushRoute } from './routes.js'
import { parseContentRange, uploadRangeHeader } from './upload-state.js'
import { Uploads } from './uploads.js'
import { contentLength, header, readBody } from './http-util.js'

export interface RegistryLog {
  info: (obj: object, msg: string) => void
  warn: (obj: object, msg: string) => void
  debug?: (obj: object, msg: string) => void
}

export interface ClusterRegistryInit {
  store: BlobStore
  exchange: PieceExchange
  catalog: Catalog
  /** Members to pull pieces from. */
  candidates: () => string[]
  /** Members that may take replicas (alive, this node left out). */
  replicaTargets: () => string[]
  /** This node's peer id. */
  self: string
  /** Members that must hold a pushed image's blobs before the push is acknowledged (this one included). */
  replicas: number
  /** The cluster's push credential (auth.ts). */
  credential: () => string
  /** Unnamed images are collected after this long (gc.ts); absent: no collection. */
  gcGraceMs?: number
  log?: RegistryLog
}

const API_HEADERS = { 'docker-distribution-api-version': 'registry/2.0' }
/** A push's chosen replica members are reused for its repository this long. */
const PENDING_MS = 10 * 60_000
const MAX_PENDING = 1_000

export class ClusterRegistry {
  readonly uploads: Uploads
  readonly content: ClusterContent
  readonly stats = { pushes: 0, uploads: 0, denied: 0, digestInvalid: 0 }
  readonly gc: RegistryGc | undefined
  /** Blob sizes and holders learnt from manifests served (a blob request carries no size). */
  private readonly sizes = new Map<string, { size: number, holders: string[] }>()
  private readonly streamStats = newMirrorStats()
  /** Repository → the members that pull its blobs as they are uploaded (so the manifest PUT finds them held). */
  private readonly pending = new Map<string, { peers: string[], at: number }>()

  get catalog (): Catalog { return this.o.catalog }

  constructor (private readonly o: ClusterRegistryInit) {
    this.uploads = new Uploads(o.store)
    this.content = new ClusterContent({ store: o.store, exchange: o.exchange, catalog: o.catalog, candidates: o.candidates, ...(o.log !== undefined ? { log: o.log } : {}) })
    if (o.gcGraceMs !== undefined) {
      this.gc = new RegistryGc({ store: o.store, catalog: o.catalog, graceMs: o.gcGraceMs, ...(o.log !== undefined ? { log: o.log } : {}) })
      this.gc.start()
    }
  }

  /** The catalog with the members that hold each image now (`images --cluster`). */
  async currentImages (signal?: AbortSignal): Promise<CatalogImage[]> {
    const { catalog, store, self, exchange } = this.o
    await catalog.sync(signal)
    return await withCurrentHolders({ catalog, store, self, members: this.o.replicaTargets(), peerHas: async (peer, digest, s) => await exchange.peerHas(peer, digest, s), ...(signal !== undefined ? { signal } : {}) })
  }

  async stop (): Promise<void> {
    await this.gc?.stop()
    await this.uploads.close()
  }

  /** Serves `req` when it is the cluster registry's; false to let the mirror answer it. Errors are thrown for the mirror's error reply. */
  async handle (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const route = parsePushPath(url.pathname)
    if (route === undefined) return false
    const method = req.method ?? 'GET'
    const read = method === 'GET' || method === 'HEAD'
    const authed = mayPush(req, this.o.credential())
    if (route.kind === 'token') { this.token(req, res); return true }
    if (route.kind === 'base') {
      // A client learns here how to authenticate; a pull-only (anonymous) token passes.
      if (!read) return false
      if (presented(req.headers.authorization) === undefined) throw this.unauthorized(req, 'authentication required: the registry gives a pull token to anyone and a push token for the push credential')
      return false
    }
    if (!read || route.kind === 'uploads' || route.kind === 'upload') {
      if (!['POST', 'PUT', 'PATCH', 'DELETE', 'GET', 'HEAD'].includes(method)) return false
      if (!authed) {
        this.stats.denied++
        req.resume()
        throw this.unauthorized(req, `${method} needs the push credential (bolt-agent registry login-token; then \`skopeo login\`, \`podman login\` or --creds bolt:TOKEN)`, `repository:${'name' in route ? route.name : ''}:pull,push`)
      }
    }
    if (read && !this.isCluster(route, url, authed)) return false
    switch (route.kind) {
      case 'uploads': await this.startUpload(req, res, route.name, url); return true
      case 'upload': await this.upload(req, res, route, url); return true
      case 'manifest':
        if (method === 'PUT') await this.putManifest(req, res, route.name, route.reference)
        else if (method === 'DELETE') await this.deleteManifest(res, route.name, route.reference)
        else await this.getManifest(res, route.name, route.reference, method === 'HEAD')
        return true
      case 'blob':
        if (method === 'DELETE') await this.deleteBlob(res, route.digest)
        else await this.getBlob(res, route.digest, method === 'HEAD')
        return true
      case 'tags': this.tags(res, route.name, url, method === 'HEAD'); return true
      case 'referrers': this.referrers(res, route.digest, url, method === 'HEAD'); return true
    }
    return false
  }

  private isCluster (route: PushRoute, url: URL, authed: boolean): boolean {
    if (authed || url.searchParams.get('ns') === CLUSTER_REGISTRY) return true
    if (!('name' in route)) return false
    if (this.o.catalog.hasRepo(route.name)) return true
    return route.kind === 'manifest' && route.reference.startsWith('sha256:') && this.o.catalog.manifestLocal(route.reference) !== undefined
  }

  private unauthorized (req: IncomingMessage, message: string, scope?: string): MirrorRequestError {
    return Object.assign(new MirrorRequestError(401, 'UNAUTHORIZED', message), { headers: { 'www-authenticate': challenge(req, scope) } })
  }

  private token (req: IncomingMessage, res: ServerResponse): void {
    const token = issueToken(req, this.o.credential())
    if (token === undefined) { this.stats.denied++; throw this.unauthorized(req, 'wrong push credential (bolt-agent registry login-token prints it)') }
    this.json(res, 200, { token, access_token: token, expires_in: 3600, issued_at: new Date().toISOString() })
  }

  private json (res: ServerResponse, status: number, body: unknown, head = false, headers: Record<string, string | number> = {}): void {
    const b = Buffer.from(JSON.stringify(body))
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': b.length, ...API_HEADERS, ...headers })
    res.end(head ? undefined : b)
  }

  private empty (res: ServerResponse, status: number, headers: Record<string, string | number>): void {
    res.writeHead(status, { 'content-length': 0, ...API_HEADERS, ...headers })
    res.end()
  }

  // ---- blob uploads ----------------------------------------------------------

  private async startUpload (req: IncomingMessage, res: ServerResponse, name: string, url: URL): Promise<void> {
    if (req.method !== 'POST') throw new MirrorRequestError(405, 'UNSUPPORTED', 'start an upload with POST')
    const mount = url.searchParams.get('mount')
    if (mount !== null) {
      const digest = checkDigest(mount)
      // Content-addressed and cluster-wide: a mount succeeds when any member holds the blob.
      const size = await this.content.blob(digest, undefined).catch((err: Error) => { this.o.log?.warn({ digest, err: err.message }, 'registry: mount failed; taking a normal upload'); return undefined })
      if (size !== undefined) {
        req.resume()
        this.empty(res, 201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest })
        return
      }
    }
    const d = url.searchParams.get('digest')
    const { id } = await this.uploads.start(name)
    this.stats.uploads++
    if (d !== null) {
      // Monolithic upload in one POST.
      try {
        const digest = checkDigest(d)
        await this.uploads.append(name, id, req, undefined, contentLength(req))
        await this.finishUpload(res, name, id, digest)
      } catch (err) {
        await this.uploads.cancel(name, id).catch((cerr: Error) => { this.o.log?.warn({ repo: name, upload: id, err: cerr.message }, 'registry: cannot drop a failed upload') })
        throw err
      }
      return
    }
    req.resume()
    this.empty(res, 202, { location: `/v2/${name}/blobs/uploads/${id}`, range: '0-0', 'docker-upload-uuid': id })
  }

  private async upload (req: IncomingMessage, res: ServerResponse, route: Extract<PushRoute, { kind: 'upload' }>, url: URL): Promise<void> {
    const { name, id } = route
    const loc = `/v2/${name}/blobs/uploads/${id}`
    switch (req.method) {
      case 'GET':
      case 'HEAD': {
        const { offset } = await this.uploads.status(name, id)
        this.empty(res, 204, { location: loc, range: uploadRangeHeader(offset), 'docker-upload-uuid': id })
        return
      }
      case 'PATCH': {
        const range = parseContentRange(header(req, 'content-range'))
        const { offset } = await this.uploads.append(name, id, req, range, contentLength(req))
        this.empty(res, 202, { location: loc, range: uploadRangeHeader(offset), 'docker-upload-uuid': id })
        return
      }
      case 'PUT': {
        const digest = checkDigest(url.searchParams.get('digest'))
        const length = contentLength(req)
        if (length !== 0) {
          const range = parseContentRange(header(req, 'content-range'))
          await this.uploads.append(name, id, req, range, length)
        } else req.resume()
        await this.finishUpload(res, name, id, digest)
        return
      }
      case 'DELETE':
        await this.uploads.cancel(name, id)
        this.empty(res, 204, {})
        return
      default:
        throw new MirrorRequestError(405, 'UNSUPPORTED', `${req.method ?? ''} is not an upload method`)
    }
  }

  private async finishUpload (res: ServerResponse, name: string, id: string, digest: string): Promise<void> {
    let size: number
    try {
      ({ size } = await this.uploads.finish(name, id, digest))
    } catch (err) {
      if ((err as MirrorRequestError).code === 'DIGEST_INVALID') this.stats.digestInvalid++
      throw err
    }
    this.preReplicate(name, digest, size)
    this.empty(res, 201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest })
  }

  /**
   * Starts the replicas of a blob as soon as it is uploaded, on the members
   * chosen for its repository's push, so the manifest PUT mostly finds them
   * held. Pinned there under `registry:pending-<digest>`, which the GC
   * releases after the grace period (the manifest's own pin keeps them).
   */
  private preReplicate (repo: string, digest: string, size: number): void {
    if (this.o.replicas <= 1) return
    const now = Date.now()
    let p = this.pending.get(repo)
    if (p === undefined || now - p.at > PENDING_MS) {
      if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.keys().next().value as string)
      p = { peers: [...this.o.replicaTargets()].sort(() => Math.random() - 0.5).slice(0, this.o.replicas - 1), at: now }
      this.pending.set(repo, p)
    }
    for (const peer of p.peers) void this.o.exchange.requestReplicate(peer, `registry:pending-${digest}`, [{ digest, size }]).catch((err: Error) => { this.o.log?.warn({ peer, digest, err: err.message }, 'registry: replication request failed') })
  }

  // ---- manifests ---------------------------------------------------------------

  private async putManifest (req: IncomingMessage, res: ServerResponse, name: string, reference: string): Promise<void> {
    const bytes = await readBody(req, MAX_MANIFEST_BYTES)
    let m: CheckedManifest
    try {
      m = checkPushedManifest(bytes, reference, header(req, 'content-type'))
    } catch (err) {
      if ((err as MirrorRequestError).code === 'DIGEST_INVALID') this.stats.digestInvalid++
      throw err
    }
    const { store, catalog } = this.o
    // Every blob it names must be in the cluster (here, or pulled here from a member), with the size it says.
    const missing: string[] = []
    for (const b of m.blobs) {
      const size = await this.content.blob(b.digest, undefined).catch((err: Error) => { this.o.log?.warn({ digest: b.digest, err: err.message }, 'registry: cannot fetch a blob the manifest names'); return undefined })
      if (size === undefined) missing.push(b.digest)
      else if (size !== b.size) throw new MirrorRequestError(400, 'SIZE_INVALID', `blob ${b.digest} is ${size} bytes, the manifest says ${b.size}`)
    }
    for (const c of m.children) if (await catalog.manifest(c.digest) === undefined) missing.push(c.digest)
    if (missing.length > 0) throw Object.assign(new MirrorRequestError(400, 'MANIFEST_BLOB_UNKNOWN', `the manifest names ${missing.length === 1 ? 'a blob' : `${missing.length} blobs`} the cluster does not hold: ${missing.slice(0, 5).join(', ')} (push ${missing.length === 1 ? 'it' : 'them'} first)`), { detail: missing.slice(0, 100) })
    await store.put(bytes, m.digest)
    const blobs = [{ digest: m.digest, size: bytes.length }, ...m.blobs]
    const owner = `registry:${m.digest}`
    await store.pin(owner, blobs.map(b => b.digest))
    const replicas = await replicate(this.o.exchange, {
      owner,
      blobs,
      want: this.o.replicas - 1,
      targets: this.o.replicaTargets(),
      prefer: this.pending.get(name)?.peers ?? []
    })
    if (replicas.held.length < replicas.wanted) {
      throw new MirrorRequestError(503, 'UNAVAILABLE', `only ${replicas.held.length + 1} of the ${replicas.wanted + 1} members the push needs hold the image's blobs (${replicas.errors.slice(0, 3).map(e => `${e.peer.slice(-8)}: ${e.error}`).join('; ')}); nothing was tagged — push again`)
    }
    const prev = catalog.manifestLocal(m.digest)
    const record: ManifestRecord = {
      mediaType: m.mediaType,
      size: bytes.length,
      ...(bytes.length <= MAX_INLINE_MANIFEST ? { data: Buffer.from(bytes).toString('base64') } : {}),
      blobs: m.blobs,
      children: m.children,
      holders: [...new Set([this.o.self, ...replicas.held, ...(prev?.holders ?? [])])].slice(0, 16),
      ...(m.subject !== undefined ? { subject: m.subject } : {}),
      ...(m.artifactType !== undefined ? { artifactType: m.artifactType } : {}),
      at: Date.now()
    }
    await catalog.putManifest(m.digest, record)
    if (!reference.startsWith('sha256:')) await catalog.putTag(name, reference, { digest: m.digest, mediaType: m.mediaType, size: bytes.length, at: Date.now() })
    this.stats.pushes++
    this.o.log?.info({ repo: name, reference, digest: m.digest, holders: record.holders.length }, 'cluster image pushed')
    this.empty(res, 201, { location: `/v2/${name}/manifests/${m.digest}`, 'docker-content-digest': m.digest, ...(m.subject !== undefined ? { 'oci-subject': m.subject } : {}) })
  }

  private async getManifest (res: ServerResponse, name: string, reference: string, head: boolean): Promise<void> {
    const m = await this.content.manifest(name, reference)
    if (m === undefined) throw new MirrorRequestError(404, 'MANIFEST_UNKNOWN', `manifest ${name}:${reference} is not in the cluster`)
    // A client asks for the blobs next: pulling them all from peers now lets pieces spread between members pulling together.
    for (const blob of m.record.blobs) this.knowSize(blob.digest, blob.size, m.record.holders)
    if (!head) for (const blob of m.record.blobs) if (!this.o.store.hasSync(blob.digest)) void this.content.blob(blob.digest, blob.size, m.record.holders).catch((err: Error) => { this.o.log?.debug?.({ digest: blob.digest, err: err.message }, 'registry: prefetch failed; the blob GET pulls it') })
    res.writeHead(200, { 'content-type': m.mediaType, 'content-length': m.bytes.length, 'docker-content-digest': m.digest, 'x-bolt-tag-source': 'cluster', ...API_HEADERS })
    res.end(head ? undefined : m.bytes)
  }

  private async deleteManifest (res: ServerResponse, name: string, reference: string): Promise<void> {
    const { catalog } = this.o
    if (!reference.startsWith('sha256:')) {
      if (await catalog.tag(name, reference) === undefined) throw new MirrorRequestError(404, 'MANIFEST_UNKNOWN', `tag ${name}:${reference} is not in the cluster`)
      await catalog.deleteTag(name, reference)
    } else {
      if (await catalog.manifest(reference) === undefined) throw new MirrorRequestError(404, 'MANIFEST_UNKNOWN', `manifest ${reference} is not in the cluster`)
      for (const t of catalog.tagsOf(name, reference)) await catalog.deleteTag(name, t)
      if (!catalog.isNamed(reference)) await catalog.deleteManifest(reference)
    }
    this.empty(res, 202, {})
  }

  // ---- blobs and tags ----------------------------------------------------------

  private knowSize (digest: string, size: number, holders: string[]): void {
    if (this.sizes.size >= MAX_KNOWN_SIZES) {
      const first = this.sizes.keys().next().value
      if (first !== undefined) this.sizes.delete(first)
    }
    this.sizes.set(digest, { size, holders })
  }

  private async getBlob (res: ServerResponse, digest: string, head: boolean): Promise<void> {
    const headers = { 'content-type': 'application/octet-stream', 'docker-content-digest': digest, ...API_HEADERS }
    if (!this.o.store.hasSync(digest)) {
      const known = this.sizes.get(digest)
      const size = known?.size ?? await this.o.exchange.probeSize(digest, this.o.candidates(), AbortSignal.timeout(5_000)).catch(() => undefined) // no member answered in time: 404 below
      if (size === undefined) throw new MirrorRequestError(404, 'BLOB_UNKNOWN', `blob ${digest} is not in the cluster`)
      if (head) { this.empty(res, 200, { ...headers, 'content-length': size }); return }
      // Piece by piece as they land, the last one only after the pull verified the whole blob (the mirror's path).
      await streamWhilePulling({ store: this.o.store, exchange: this.o.exchange, stats: this.streamStats, ...(this.o.log !== undefined ? { log: this.o.log } : {}), pull: async () => { await this.content.blob(digest, size, known?.holders ?? []) } }, digest, size, res, headers)
      return
    }
    const size = this.o.store.sizeSync(digest) ?? 0
    res.writeHead(200, { ...headers, 'content-length': size })
    if (head) { res.end(); return }
    const stream = this.o.store.createReadStream(digest)
    stream.on('error', err => {
      this.o.log?.warn({ digest, size, err: err.message }, 'registry: reading a stored blob failed mid-response; the client reads an early end of the body')
      res.destroy(err)
    })
    stream.pipe(res)
  }

  private async deleteBlob (res: ServerResponse, digest: string): Promise<void> {
    if (this.o.catalog.referenced().has(digest)) throw new MirrorRequestError(405, 'UNSUPPORTED', `blob ${digest} is named by a cluster manifest: delete the manifest (its blobs are collected after the grace period)`)
    if (!await this.o.store.delete(digest)) throw new MirrorRequestError(404, 'BLOB_UNKNOWN', `blob ${digest} is not on this member`)
    this.empty(res, 202, {})
  }

  /** The referrers API: an OCI index of the manifests whose subject is `digest` (empty when none). */
  private referrers (res: ServerResponse, digest: string, url: URL, head: boolean): void {
    const artifactType = url.searchParams.get('artifactType') ?? undefined
    const manifests = this.o.catalog.referrers(digest, artifactType)
    const body = { schemaVersion: 2, mediaType: MT_OCI_INDEX, manifests }
    this.json(res, 200, body, head, { 'content-type': MT_OCI_INDEX, ...(artifactType !== undefined ? { 'oci-filters-applied': 'artifactType' } : {}) })
  }

  private tags (res: ServerResponse, name: string, url: URL, head: boolean): void {
    let tags = this.o.catalog.tags(name)
    if (tags.length === 0) throw new MirrorRequestError(404, 'NAME_UNKNOWN', `repository ${name} is not in the cluster`)
    const last = url.searchParams.get('last')
    if (last !== null) tags = tags.filter(t => t > last)
    const n = Number(url.searchParams.get('n') ?? NaN)
    if (Number.isSafeInteger(n) && n >= 0) tags = tags.slice(0, n)
    this.json(res, 200, { name, tags }, head)
  }
}
