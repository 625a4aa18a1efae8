// Pulls an image — manifest, config, layers — into the blob store, layers
// from peers first and from the registry only for what no peer delivers,
// and records it in the store's OCI `index.json` (annotated with its
// reference), so the store root is itself an OCI image layout that `native/`
// can read. `exportImageLayout` writes a standalone layout of one image.
import { statSync } from 'node:fs'
import { copyFile, link, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import type { BlobStore } from './blob-store.js'
import { ImageNotFoundError, type RegistryError } from './errors.js'
import { writeFileAtomic } from './fs-atomic.js'
import { MT_OCI_MANIFEST, parseImageManifest, type Descriptor, type ImageManifest } from './oci.js'
import type { PieceExchange } from './piece-exchange.js'
import { formatReference, parseReference, type ImageReference } from './reference.js'
import { BODY_IDLE_TIMEOUT_MS, idleBounded, type RegistryClient } from './registry-client.js'

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'
export const PULLED_AT_ANNOTATION = 'io.bolt.pulled-at'
/** Where the image's blob bytes came from when it was pulled, kept in index.json with it (decimal byte counts). */
export const FROM_PEERS_ANNOTATION = 'io.bolt.bytes-from-peers'
export const FROM_REGISTRY_ANNOTATION = 'io.bolt.bytes-from-registry'
export const LOCAL_ANNOTATION = 'io.bolt.bytes-local'
const ORIGIN_ANNOTATIONS = [FROM_PEERS_ANNOTATION, FROM_REGISTRY_ANNOTATION, LOCAL_ANNOTATION] as const
/**
 * Blobs of one image pulled at once. All of them (up to this bound): a node
 * that starts every layer at once is counted by the peers pulling the same
 * image when they split registry pieces, instead of looking idle.
 */
export const DEFAULT_BLOB_CONCURRENCY = 16

export interface ImagePullerInit {
  store: BlobStore
  registry: RegistryClient
  /** Absent: everything from the registry. */
  exchange?: PieceExchange
  /** Live cluster members to ask for pieces directly. */
  candidates?: () => string[]
  /** Default registry for short names (docker.io). */
  defaultRegistry?: string
  /**
   * Images the cluster serves itself (`bolt.local/…`, agent/registry/): for
   * refs on `host` the manifest comes from `resolve` and the blobs from
   * peers only (its holders first), never from a registry.
   */
  cluster?: { host: string, resolve: (ref: ImageReference, signal?: AbortSignal) => Promise<ClusterResolved | undefined> }
}

/** A cluster image resolved to this platform's manifest (verified), its index when it has one, and the members that hold its blobs. */
export interface ClusterResolved {
  digest: string
  bytes: Uint8Array
  mediaType: string
  index?: { digest: string, bytes: Uint8Array }
  holders: string[]
}

export interface ImagePullProgress {
  ref: string
  phase: 'manifest' | 'blobs' | 'done'
  totalBytes: number
  doneBytes: number
  bytesFromPeers: number
  bytesFromRegistry: number
  /** Bytes already in the store before this pull. */
  bytesLocal: number
  blobs: number
  blobsDone: number
}

export interface PulledImage {
  ref: string
  digest: string
  manifest: ImageManifest
  size: number
  bytesFromPeers: number
  bytesFromRegistry: number
  bytesLocal: number
}

/** What a tag resolved to: the digest it names (an index's for a multi-platform image) and this platform's manifest digest. */
export interface TagResolution {
  tag: string
  digest: string
}

export interface ImageRecord {
  ref: string
  digest: string
  size: number
  pulledAt: string
  /** Where its bytes came from; null for an image recorded before agents kept this. */
  bytesFromPeers: number | null
  bytesFromRegistry: number | null
  /** Bytes that were already in the store (shared with another image). */
  bytesLocal: number | null
}

const IndexFileSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(z.object({
    mediaType: z.string(),
    digest: z.string(),
    size: z.number(),
    annotations: z.record(z.string(), z.string()).optional()
  }).loose())
}).loose()
type IndexFile = z.infer<typeof IndexFileSchema>

export class ImagePuller {
  private indexWrite: Promise<void> = Promise.resolve()
  /** index.json as `lookup` last read it, with the file's identity then (see indexForLookup). */
  private lookupIndex: { key: string, idx: IndexFile } | undefined

  constructor (private readonly init: ImagePullerInit) {}

  private parse (ref: string): ImageReference {
    return parseReference(ref, { defaultRegistry: this.init.defaultRegistry })
  }

  async pull (refString: string, opts: { signal?: AbortSignal, onProgress?: (p: ImagePullProgress) => void, concurrency?: number } = {}): Promise<PulledImage> {
    const ref = this.parse(refString)
    const name = formatReference(ref)
    const { store, registry } = this.init
    const cluster = this.init.cluster !== undefined && ref.registry === this.init.cluster.host ? this.init.cluster : undefined
    let holders: string[] = []
    const progress: ImagePullProgress = { ref: name, phase: 'manifest', totalBytes: 0, doneBytes: 0, bytesFromPeers: 0, bytesFromRegistry: 0, bytesLocal: 0, blobs: 0, blobsDone: 0 }
    opts.onProgress?.({ ...progress })

    // The manifest: by digest from the store when present, else from the registry (tags are always resolved upstream).
    let manifestDigest: string
    let manifestBytes: Uint8Array
    let manifestMediaType = MT_OCI_MANIFEST
    const extra: string[] = []
    if (ref.digest !== undefined && store.hasSync(ref.digest)) {
      manifestDigest = ref.digest
      manifestBytes = await store.readAll(ref.digest)
      manifestMediaType = (JSON.parse(Buffer.from(manifestBytes).toString()) as { mediaType?: string }).mediaType ?? MT_OCI_MANIFEST
    } else {
      const resolved = cluster !== undefined ? await cluster.resolve(ref, opts.signal) : await registry.resolve(ref, { signal: opts.signal })
      if (resolved === undefined) throw new ImageNotFoundError(`image ${name} is not in the cluster (push it to any agent's registry endpoint)`)
      if ('holders' in resolved) holders = resolved.holders
      manifestDigest = resolved.digest
      manifestBytes = resolved.bytes
      manifestMediaType = resolved.mediaType
      await store.put(resolved.bytes, resolved.digest)
      if (resolved.index !== undefined) {
        await store.put(resolved.index.bytes, resolved.index.digest)
        extra.push(resolved.index.digest)
      }
    }
    const manifest = parseImageManifest(manifestBytes)
    const blobs: Descriptor[] = [manifest.config, ...manifest.layers]
    progress.phase = 'blobs'
    progress.blobs = blobs.length
    progress.totalBytes = blobs.reduce((n, b) => n + b.size, 0)
    opts.onProgress?.({ ...progress })

    // Pin before pulling, so eviction under quota never takes a blob of an image being pulled.
    const owner = `image:${name}`
    await store.pin(owner, [manifestDigest, ...extra, ...blobs.map(b => b.digest)])

    const perBlob = new Map<string, { peers: number, registry: number }>()
    const report = (): void => {
      let peers = 0
      let reg = 0
      for (const v of perBlob.values()) { peers += v.peers; reg += v.registry }
      progress.bytesFromPeers = peers
      progress.bytesFromRegistry = reg
      progress.doneBytes = progress.bytesLocal + peers + reg
      opts.onProgress?.({ ...progress })
    }
    const queue = [...blobs]
    const worker = async (): Promise<void> => {
      for (let d = queue.shift(); d !== undefined; d = queue.shift()) {
        const desc = d
        if (store.hasSync(desc.digest)) {
          progress.bytesLocal += desc.size
        } else if (cluster !== undefined) {
          // A cluster image: its holders first, then every member; no registry behind them.
          if (this.init.exchange === undefined) throw new ImageNotFoundError(`${name}: cluster images come from peers and this node has no piece exchange`)
          const alive = this.init.candidates?.() ?? []
          const stats = await this.init.exchange.pull(desc.digest, {
            size: desc.size,
            candidates: [...holders.filter(h => alive.includes(h)), ...alive.filter(c => !holders.includes(c))],
            signal: opts.signal,
            onProgress: p => { perBlob.set(desc.digest, { peers: p.bytesFromPeers, registry: 0 }); report() }
          })
          perBlob.set(desc.digest, { peers: stats.bytesFromPeers, registry: 0 })
        } else if (this.init.exchange !== undefined) {
          const stats = await this.init.exchange.pull(desc.digest, {
            size: desc.size,
            candidates: this.init.candidates?.() ?? [],
            registry: async (range, signal, into) => await registry.getBlobRange(ref, desc.digest, range.start, range.length, { signal, into }),
            signal: opts.signal,
            onProgress: p => { perBlob.set(desc.digest, { peers: p.bytesFromPeers, registry: p.bytesFromRegistry }); report() }
          })
          perBlob.set(desc.digest, { peers: stats.bytesFromPeers, registry: stats.bytesFromRegistry })
        } else {
          await registry.retryBody(opts.signal, async () => {
            const res = await registry.openBlob(ref, desc.digest, { signal: opts.signal })
            if (res.body === null) throw new ImageNotFoundError(`${name}: blob ${desc.digest} has no body`)
            await store.put(idleBounded(res.body, BODY_IDLE_TIMEOUT_MS), desc.digest, { size: desc.size })
          })
          perBlob.set(desc.digest, { peers: 0, registry: desc.size })
        }
        progress.blobsDone++
        report()
      }
    }
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? DEFAULT_BLOB_CONCURRENCY, blobs.length) }, worker))

    await this.recordImage(name, { mediaType: manifestMediaType, digest: manifestDigest, size: manifestBytes.length }, progress)
    progress.phase = 'done'
    report()
    return { ref: name, digest: manifestDigest, manifest, size: progress.totalBytes, bytesFromPeers: progress.bytesFromPeers, bytesFromRegistry: progress.bytesFromRegistry, bytesLocal: progress.bytesLocal }
  }

  /**
   * What `refString` names now, with nothing pulled, pinned or recorded: the
   * digest it carries, or its tag resolved upstream (registry or cluster).
   * Given `last`, what this tag resolved to before (verified then), a
   * registry is asked with one HEAD: when the tag still names `last.tag`
   * (the index of a multi-platform image, else the manifest), `last` is
   * the answer, with no manifest fetched, hashed or parsed. Otherwise, or
   * when the HEAD gives no digest, the manifest is fetched and verified.
   */
  async resolveTag (refString: string, signal?: AbortSignal, last?: TagResolution): Promise<TagResolution> {
    const ref = this.parse(refString)
    if (ref.digest !== undefined) return { tag: ref.digest, digest: ref.digest }
    const cluster = this.init.cluster !== undefined && ref.registry === this.init.cluster.host ? this.init.cluster : undefined
    if (cluster === undefined && last !== undefined) {
      const named = await this.headTag(ref, signal)
      if (named === last.tag) return last
    }
    const resolved = cluster !== undefined ? await cluster.resolve(ref, signal) : await this.init.registry.resolve(ref, { signal })
    if (resolved === undefined) throw new ImageNotFoundError(`image ${formatReference(ref)} is not in the cluster (push it to any agent's registry endpoint)`)
    return { tag: resolved.index?.digest ?? resolved.digest, digest: resolved.digest }
  }

  /**
   * The digest the tag names by a HEAD; undefined where the registry answers
   * a HEAD with a client error (some mirrors refuse the method) or no digest:
   * the GET that follows then gives the real answer or error. A registry
   * that cannot be reached, or fails after retries, fails here as a GET would.
   */
  private async headTag (ref: ImageReference, signal?: AbortSignal): Promise<string | undefined> {
    try {
      return await this.init.registry.headManifest(ref, ref.tag ?? 'latest', signal)
    } catch (err) {
      const status = (err as Error).name === 'RegistryError' ? (err as RegistryError).status : undefined
      if (status !== undefined && status >= 400 && status < 500) return undefined
      throw err
    }
  }

  private get indexPath (): string { return join(this.init.store.root, 'index.json') }

  private async readIndex (): Promise<IndexFile> {
    try {
      return IndexFileSchema.parse(JSON.parse(await readFile(this.indexPath, 'utf8')))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }
      throw err
    }
  }

  private async updateIndex (fn: (idx: IndexFile) => void): Promise<void> {
    const w = this.indexWrite.then(async () => {
      const idx = await this.readIndex()
      fn(idx)
      await writeFileAtomic(this.indexPath, Buffer.from(JSON.stringify(idx, null, 2)), join(this.init.store.root, 'tmp'))
    })
    this.indexWrite = w.catch(() => {}) // this caller gets the error from `await w`; the chain goes on for the next write
    await w
  }

  /**
   * Records the image in index.json with where its bytes came from, in the
   * index write the pull makes anyway. A pull again of the same digest that
   * fetched nothing (every capsule start resolves its tag again) keeps the
   * origin the bytes had, rather than saying they were all already here.
   */
  private async recordImage (name: string, d: { mediaType: string, digest: string, size: number }, got: { bytesFromPeers: number, bytesFromRegistry: number, bytesLocal: number }): Promise<void> {
    await this.updateIndex(idx => {
      const prev = idx.manifests.find(m => m.annotations?.[REF_NAME_ANNOTATION] === name)
      const keep = prev?.digest === d.digest && got.bytesFromPeers + got.bytesFromRegistry === 0 && prev.annotations?.[FROM_PEERS_ANNOTATION] !== undefined
      const origin = keep
        ? Object.fromEntries(ORIGIN_ANNOTATIONS.map(k => [k, prev.annotations?.[k] ?? '0']))
        : { [FROM_PEERS_ANNOTATION]: String(got.bytesFromPeers), [FROM_REGISTRY_ANNOTATION]: String(got.bytesFromRegistry), [LOCAL_ANNOTATION]: String(got.bytesLocal) }
      idx.manifests = idx.manifests.filter(m => m.annotations?.[REF_NAME_ANNOTATION] !== name)
      idx.manifests.push({ ...d, annotations: { [REF_NAME_ANNOTATION]: name, [PULLED_AT_ANNOTATION]: new Date().toISOString(), ...origin } })
    })
  }

  /** Images pulled into this store, newest last. */
  async images (): Promise<ImageRecord[]> {
    const idx = await this.readIndex()
    const out: ImageRecord[] = []
    for (const m of idx.manifests) {
      const ref = m.annotations?.[REF_NAME_ANNOTATION]
      if (ref === undefined) continue
      let size = m.size
      try {
        const man = parseImageManifest(await this.init.store.readAll(m.digest))
        size = [man.config, ...man.layers].reduce((n, b) => n + b.size, 0)
      } catch { /* manifest evicted: report the manifest size */ }
      out.push({ ref, digest: m.digest, size, pulledAt: m.annotations?.[PULLED_AT_ANNOTATION] ?? '', bytesFromPeers: count(m.annotations?.[FROM_PEERS_ANNOTATION]), bytesFromRegistry: count(m.annotations?.[FROM_REGISTRY_ANNOTATION]), bytesLocal: count(m.annotations?.[LOCAL_ANNOTATION]) })
    }
    return out
  }

  /** Forgets an image: drops it from index.json and unpins its blobs (GC or quota may then remove them). */
  async remove (refString: string): Promise<boolean> {
    const name = formatReference(this.parse(refString))
    let found = false
    await this.updateIndex(idx => {
      const before = idx.manifests.length
      idx.manifests = idx.manifests.filter(m => m.annotations?.[REF_NAME_ANNOTATION] !== name)
      found = idx.manifests.length !== before
    })
    await this.init.store.unpin(`image:${name}`)
    return found
  }

  /**
   * index.json, read and parsed again only when the file changed (another
   * inode, size or mtime; every write here renames a new file in). `lookup`
   * runs at every capsule start, and there an asynchronous read waits in
   * libuv's thread pool behind Raft's fsyncs; a stat on the loop does not.
   */
  private async indexForLookup (): Promise<IndexFile> {
    let key: string
    try {
      const st = statSync(this.indexPath)
      key = `${st.ino}:${st.size}:${st.mtimeMs}`
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      this.lookupIndex = undefined
      return await this.readIndex()
    }
    if (this.lookupIndex?.key === key) return this.lookupIndex.idx
    // Read after the stat: a file replaced in between leaves a newer index under the older key, read again next time.
    const idx = await this.readIndex()
    this.lookupIndex = { key, idx }
    return idx
  }

  /** The manifest digest recorded for `ref` (full reference, or a digest). */
  async lookup (refString: string): Promise<{ ref: string, digest: string } | undefined> {
    const idx = await this.indexForLookup()
    const name = refString.startsWith('sha256:') ? undefined : formatReference(this.parse(refString))
    const m = idx.manifests.find(x => (name !== undefined && x.annotations?.[REF_NAME_ANNOTATION] === name) || x.digest === refString)
    return m === undefined ? undefined : { ref: m.annotations?.[REF_NAME_ANNOTATION] ?? m.digest, digest: m.digest }
  }

  /**
   * Writes a standalone OCI image layout of one pulled image to `dir`
   * (blobs hard-linked when on the same file system, copied otherwise), its
   * index entry annotated with the reference and with the tag alone.
   */
  async exportImageLayout (refString: string, dir: string): Promise<{ digest: string }> {
    const found = await this.lookup(refString)
    if (found === undefined) throw new ImageNotFoundError(`image ${refString} is not pulled here (bolt-agent pull it first)`)
    const { store } = this.init
    const bytes = await store.readAll(found.digest)
    const manifest = parseImageManifest(bytes)
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
    for (const digest of [found.digest, manifest.config.digest, ...manifest.layers.map(l => l.digest)]) {
      if (!store.hasSync(digest)) throw new ImageNotFoundError(`image ${found.ref}: blob ${digest} is missing from the store (pull the image again)`)
      const dest = join(dir, 'blobs', 'sha256', digest.slice(7))
      try {
        await link(store.blobPath(digest), dest)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EEXIST') continue
        await copyFile(store.blobPath(digest), dest)
      }
    }
    const mediaType = manifest.mediaType ?? MT_OCI_MANIFEST
    await writeFile(join(dir, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType, digest: found.digest, size: bytes.length, annotations: { [REF_NAME_ANNOTATION]: found.ref } }]
    }, null, 2))
    return { digest: found.digest }
  }
}

/** A byte count kept as an annotation; null when absent or not a count (index.json is edited by hand at times). */
function count (v: string | undefined): number | null {
  if (v === undefined || !/^\d{1,16}$/.test(v)) return null
  return Number(v)
}
