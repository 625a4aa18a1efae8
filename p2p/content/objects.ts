// Objects: files split by FastCDC into content-addressed chunks (identical
// chunks stored once), described by an object manifest that is itself a
// blob — the object id is the manifest's digest, so an id names exact bytes.
// `putObject` stores locally and asks K peers (chosen by the caller, e.g. by
// free space) to pull and pin a replica; `getObject` fetches the manifest and
// chunks through the piece exchange, each verified, and writes the file.
import { randomBytes } from 'node:crypto'
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { z } from 'zod'
import type { BlobStore, StagedBlob } from './blob-store.js'
import { sha256Digest } from './digest.js'
import { ObjectNotFoundError, ManifestError } from './errors.js'
import { chunkFile, DEFAULT_CDC, type CdcParams } from './fastcdc.js'
import { fsyncDir } from './fs-atomic.js'
import type { PieceExchange } from './piece-exchange.js'
import type { ReplicaBlob } from './piece-messages.js'
import { MAX_OBJECT_CHUNKS, ObjectStageWriter, type StagedObject, type StageWriter } from './stage-writer.js'

export { MAX_OBJECT_CHUNKS, type StagedObject, type StageWriter }

export const OBJECT_MANIFEST_MEDIA_TYPE = 'application/vnd.bolt.object.manifest.v1+json'
/** Chunks fetched at once by getObject. */
export const DEFAULT_CHUNK_CONCURRENCY = 4
/**
 * Parsed manifests kept (an id names exact bytes, so a kept one never goes
 * stale): the ranged GETs of one object parse it once. Only manifests of at
 * most MANIFEST_CACHE_MAX_CHUNKS chunks (about 4 GiB) are kept, so the cache
 * stays under a few MB.
 */
export const MANIFEST_CACHE_ENTRIES = 8
export const MANIFEST_CACHE_MAX_CHUNKS = 4096

const Digest = z.string().regex(/^sha256:[a-f0-9]{64}$/)
export const ObjectManifestSchema = z.object({
  mediaType: z.literal(OBJECT_MANIFEST_MEDIA_TYPE),
  size: z.number().int().nonnegative(),
  name: z.string().max(1024).optional(),
  chunks: z.array(z.object({ digest: Digest, size: z.number().int().positive() })).max(MAX_OBJECT_CHUNKS)
}).refine(m => m.chunks.reduce((n, c) => n + c.size, 0) === m.size, { message: 'chunk sizes do not add up to the object size' })
export type ObjectManifest = z.infer<typeof ObjectManifestSchema>

/** Picks up to `count` peers to hold replicas of an object of `size` bytes (e.g. by free space). */
export type ReplicaChooser = (count: number, opts: { size: number, exclude: string[] }) => string[]

export interface ObjectStoreInit {
  store: BlobStore
  exchange: PieceExchange
  chooseReplicas?: ReplicaChooser
  /** Live members to ask for chunks directly. */
  candidates?: () => string[]
  cdc?: CdcParams
}

export interface PutResult {
  id: string
  size: number
  chunks: number
  /** Chunks that were already in the store (dedup). */
  dedupedChunks: number
  replicas: string[]
  /** Peers asked to hold a replica that failed, with why. */
  replicaErrors: Array<{ peer: string, error: string }>
}


export interface GetResult {
  id: string
  size: number
  bytesFromPeers: number
  bytesLocal: number
}

/** An object made local by `fetchObject`, with the manifest `readObject` reads it by. */
export interface FetchedObject extends GetResult {
  manifest: ObjectManifest
}

export class ObjectStore {
  private readonly cdc: CdcParams
  /** Recently read manifests, oldest first (Map order). */
  private readonly manifests = new Map<string, ObjectManifest>()

  constructor (private readonly init: ObjectStoreInit) {
    this.cdc = init.cdc ?? DEFAULT_CDC
    init.exchange.setReplicateHandler(async (from, owner, blobs, signal) => await this.holdReplica(from, owner, blobs, signal))
  }

  static owner (id: string): string {
    return `object:${id}`
  }

  async putObject (file: string, opts: { replicas?: number, name?: string, signal?: AbortSignal } = {}): Promise<PutResult> {
    const { store } = this.init
    const chunks: Array<{ digest: string, size: number }> = []
    let deduped = 0
    let size = 0
    for await (const chunk of chunkFile(file, this.cdc)) {
      opts.signal?.throwIfAborted()
      const digest = sha256Digest(chunk)
      if (store.hasSync(digest)) deduped++
      else await store.put(chunk, digest, { size: chunk.length })
      chunks.push({ digest, size: chunk.length })
      size += chunk.length
    }
    const manifest: ObjectManifest = { mediaType: OBJECT_MANIFEST_MEDIA_TYPE, size, name: opts.name ?? basename(file), chunks }
    const bytes = Buffer.from(JSON.stringify(manifest))
    const id = sha256Digest(bytes)
    await store.put(bytes, id, { size: bytes.length })
    await store.pin(ObjectStore.owner(id), [id, ...chunks.map(c => c.digest)])

    const { replicas, replicaErrors } = await this.replicate(id, bytes.length, chunks, size, opts.replicas ?? 0, opts.signal)
    return { id, size, chunks: chunks.length, dedupedChunks: deduped, replicas, replicaErrors }
  }

  /**
   * Chunks a byte stream into staged blobs (written, not fsync'd, not
   * visible): the first half of a put whose bytes are checked only once they
   * have all gone by (an S3 body). Then `commitObject` stores it, or
   * `discardObject` deletes every staged byte. Memory: one CDC window.
   */
  async stageObject (source: AsyncIterable<Uint8Array>, opts: { signal?: AbortSignal } = {}): Promise<StagedObject> {
    const w = this.stageWriter()
    try {
      for await (const piece of source) {
        opts.signal?.throwIfAborted()
        await w.write(piece)
      }
      return await w.end()
    } catch (err) {
      await w.abort()
      throw err
    }
  }

  /**
   * stageObject driven by its caller, for bytes pushed as they arrive (an
   * HTTP body's 'data' events): `write` copies the bytes and returns a
   * promise only while chunks are being written (wait for it before the
   * next write); then `end`, or `abort` to delete what was staged.
   */
  stageWriter (): StageWriter {
    return new ObjectStageWriter(this.init.store, this.cdc)
  }
  /** Deletes a staged object's temp files; nothing of it was ever visible. */
  async discardObject (staged: StagedObject): Promise<void> {
    await this.init.store.discardStaged(staged.chunks)
  }

  /**
   * Stores a staged object: its chunks and manifest made durable and visible
   * at once (one batch of fsyncs), pinned, then replicated like putObject's.
   */
  async commitObject (staged: StagedObject, opts: { replicas?: number, name?: string, signal?: AbortSignal } = {}): Promise<PutResult> {
    const { store } = this.init
    const chunks = staged.chunks.map(c => ({ digest: c.digest, size: c.size }))
    const deduped = staged.chunks.filter(c => c.tmp === undefined).length
    const manifest: ObjectManifest = { mediaType: OBJECT_MANIFEST_MEDIA_TYPE, size: staged.size, ...(opts.name !== undefined ? { name: opts.name } : {}), chunks }
    const bytes = Buffer.from(JSON.stringify(manifest))
    let all = staged.chunks
    try {
      all = [...staged.chunks, await store.stage(bytes)]
      await store.commitStaged(all)
    } catch (err) {
      await store.discardStaged(all)
      throw err
    }
    const id = all[all.length - 1]!.digest
    await store.pin(ObjectStore.owner(id), [id, ...chunks.map(c => c.digest)])
    const { replicas, replicaErrors } = await this.replicate(id, bytes.length, chunks, staged.size, opts.replicas ?? 0, opts.signal)
    return { id, size: staged.size, chunks: chunks.length, dedupedChunks: deduped, replicas, replicaErrors }
  }

  /**
   * Stores a new object made of chunks already in the store (an S3 multipart
   * upload's parts, concatenated): only its manifest is written, then pinned
   * and replicated like putObject's.
   */
  async putChunks (chunks: Array<{ digest: string, size: number }>, opts: { replicas?: number, name?: string, signal?: AbortSignal } = {}): Promise<PutResult> {
    const { store } = this.init
    for (const c of dedupe(chunks)) if (!store.hasSync(c.digest)) throw new ObjectNotFoundError(`chunk ${c.digest} of the new object is not in this node's store`)
    const size = chunks.reduce((n, c) => n + c.size, 0)
    const manifest: ObjectManifest = { mediaType: OBJECT_MANIFEST_MEDIA_TYPE, size, ...(opts.name !== undefined ? { name: opts.name } : {}), chunks }
    const bytes = Buffer.from(JSON.stringify(manifest))
    const id = sha256Digest(bytes)
    if (!store.hasSync(id)) await store.put(bytes, id, { size: bytes.length })
    await store.pin(ObjectStore.owner(id), [id, ...chunks.map(c => c.digest)])
    const { replicas, replicaErrors } = await this.replicate(id, bytes.length, chunks, size, opts.replicas ?? 0, opts.signal)
    return { id, size, chunks: chunks.length, dedupedChunks: chunks.length, replicas, replicaErrors }
  }

  /**
   * Repair: object `id` (local already, see fetchObject) gets `want` more
   * peer copies, never on `exclude` (the holders it has).
   */
  async addReplicas (id: string, want: number, exclude: string[], signal?: AbortSignal): Promise<{ replicas: string[], replicaErrors: Array<{ peer: string, error: string }> }> {
    const manifestSize = (await this.init.store.readAll(id)).length
    const manifest = await this.readManifest(id)
    return await this.replicate(id, manifestSize, manifest.chunks, manifest.size, want, signal, exclude)
  }

  /** Asks up to `want` peers to pull and pin object `id`; when one fails, another is chosen. */
  private async replicate (id: string, manifestSize: number, chunks: Array<{ digest: string, size: number }>, size: number, want: number, signal?: AbortSignal, exclude: string[] = []): Promise<{ replicas: string[], replicaErrors: Array<{ peer: string, error: string }> }> {
    const replicas: string[] = []
    const replicaErrors: Array<{ peer: string, error: string }> = []
    if (want > 0) {
      const self = this.init.exchange.self
      const tried = new Set<string>([self, ...exclude])
      // Ask chosen peers; when one fails, choose again among the rest.
      while (replicas.length < want) {
        const chooser = this.init.chooseReplicas ?? ((count, o) => (this.init.candidates?.() ?? []).filter(p => !o.exclude.includes(p)).slice(0, count))
        const picks = chooser(want - replicas.length, { size, exclude: [...tried] }).filter(p => !tried.has(p))
        if (picks.length === 0) break
        for (const p of picks) tried.add(p)
        const blobs = [{ digest: id, size: manifestSize }, ...dedupe(chunks)]
        const results = await Promise.allSettled(picks.map(async peer => { await this.init.exchange.requestReplicate(peer, ObjectStore.owner(id), blobs, { signal }); return peer }))
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') replicas.push(r.value)
          else replicaErrors.push({ peer: picks[i] as string, error: (r.reason as Error).message })
        })
      }
    }
    return { replicas, replicaErrors }
  }

  /** A peer asked us to hold an object's blobs: pull each (verified) and pin them. */
  private async holdReplica (from: string, owner: string, blobs: ReplicaBlob[], signal: AbortSignal): Promise<void> {
    // `registry:<manifest digest>`: a cluster image's blobs, replicated before its push is acknowledged (agent/registry/).
    if (!owner.startsWith('object:') && !owner.startsWith('registry:')) throw new Error(`refusing replicas for ${owner}: only objects and cluster images are replicated on request`)
    const candidates = [from, ...(this.init.candidates?.() ?? []).filter(p => p !== from)]
    await this.init.store.ensureSpace(blobs.filter(b => !this.init.store.hasSync(b.digest)).reduce((n, b) => n + b.size, 0))
    await this.storeInline(blobs)
    await runLimited(blobs, DEFAULT_CHUNK_CONCURRENCY, async b => { await this.init.exchange.pull(b.digest, { size: b.size, candidates, signal }) })
    await this.init.store.pin(owner, blobs.map(b => b.digest))
  }

  /** The blobs that came with their bytes, each checked against its digest, stored in one batch of fsyncs. */
  private async storeInline (blobs: ReplicaBlob[]): Promise<void> {
    const { store } = this.init
    const staged: StagedBlob[] = []
    try {
      for (const b of blobs) {
        if (b.data === undefined || store.hasSync(b.digest)) continue
        const s = await store.stage(b.data)
        staged.push(s)
        if (s.digest !== b.digest) throw new Error(`replica bytes sent for ${b.digest} hash to ${s.digest}`)
      }
      await store.commitStaged(staged)
    } catch (err) {
      await store.discardStaged(staged)
      throw err
    }
  }

  async readManifest (id: string): Promise<ObjectManifest> {
    const kept = this.manifests.get(id)
    if (kept !== undefined) {
      this.manifests.delete(id)
      this.manifests.set(id, kept)
      return kept
    }
    const bytes = await this.init.store.readAll(id)
    let raw: unknown
    try {
      raw = JSON.parse(Buffer.from(bytes).toString('utf8'))
    } catch (err) {
      throw new ManifestError(`object ${id}: manifest is not JSON`, { cause: err })
    }
    const r = ObjectManifestSchema.safeParse(raw)
    if (!r.success) throw new ManifestError(`object ${id}: ${r.error.issues[0]?.message ?? 'invalid manifest'}`)
    // The blob store verified these bytes against `id` when it stored them.
    if (r.data.chunks.length <= MANIFEST_CACHE_MAX_CHUNKS) this.manifests.set(id, r.data)
    if (this.manifests.size > MANIFEST_CACHE_ENTRIES) this.manifests.delete(this.manifests.keys().next().value!)
    return r.data
  }

  /** Fetches object `id` (manifest, then chunks, all verified) and writes it to `dest` atomically. */
  /**
   * Makes the whole object local: its manifest and every chunk, pulled from
   * `candidates` where missing, verified piece by piece, and pinned. Then
   * `readObject` yields its bytes, or `getObject` writes them to a file.
   */
  async fetchObject (id: string, opts: { candidates?: string[], signal?: AbortSignal } = {}): Promise<FetchedObject> {
    const { store, exchange } = this.init
    const candidates = opts.candidates ?? this.init.candidates?.() ?? []
    let bytesFromPeers = 0
    let bytesLocal = 0
    if (!store.hasSync(id)) {
      const size = await exchange.probeSize(id, candidates, opts.signal)
      if (size === undefined) throw new ObjectNotFoundError(`object ${id} is not held by this node or any of ${candidates.length} peers asked`)
      const s = await exchange.pull(id, { size, candidates, signal: opts.signal })
      bytesFromPeers += s.bytesFromPeers
    }
    const manifest = await this.readManifest(id)
    await store.pin(ObjectStore.owner(id), [id, ...manifest.chunks.map(c => c.digest)])
    await runLimited(dedupe(manifest.chunks), DEFAULT_CHUNK_CONCURRENCY, async c => {
      if (store.hasSync(c.digest)) { bytesLocal += c.size; return }
      // Read the counter after the await: chunks are pulled in parallel.
      const s = await exchange.pull(c.digest, { size: c.size, candidates, signal: opts.signal })
      bytesFromPeers += s.bytesFromPeers
    })
    return { id, size: manifest.size, bytesFromPeers, bytesLocal, manifest }
  }

  /** The bytes of an object fetched before (`fetchObject`), chunk by chunk in order (one chunk in memory at a time). */
  async * readObject (manifest: ObjectManifest): AsyncIterable<Uint8Array> {
    let pos = 0
    for (const c of manifest.chunks) {
      const data = await this.init.store.readAll(c.digest)
      pos += data.length
      yield data
    }
    if (pos !== manifest.size) throw new ManifestError(`object: assembled ${pos} bytes, manifest says ${manifest.size}`)
  }

  /** The manifest of object `id` when it and every chunk are already in this node's store (pinned by whoever stored them); else undefined. */
  async localManifest (id: string): Promise<ObjectManifest | undefined> {
    if (!this.init.store.hasSync(id)) return undefined
    const manifest = await this.readManifest(id)
    return manifest.chunks.every(c => this.init.store.hasSync(c.digest)) ? manifest : undefined
  }

  /** A handle to read one chunk of a fetched object piece by piece into the caller's buffers; the caller closes it. */
  async openChunk (digest: string): Promise<FileHandle> {
    return await this.init.store.openRead(digest)
  }

  async getObject (id: string, dest: string, opts: { candidates?: string[], signal?: AbortSignal } = {}): Promise<GetResult> {
    const { manifest, ...result } = await this.fetchObject(id, opts)
    const tmp = join(dirname(dest), `.${basename(dest)}.${randomBytes(4).toString('hex')}.part`)
    const fh = await open(tmp, 'wx')
    try {
      let pos = 0
      for await (const data of this.readObject(manifest)) {
        let off = 0
        while (off < data.length) off += (await fh.write(data, off, data.length - off, pos + off)).bytesWritten
        pos += data.length
      }
      await fh.sync()
      await fh.close()
      if ((await stat(tmp)).size !== manifest.size) throw new ManifestError(`object ${id}: assembled ${pos} bytes, manifest says ${manifest.size}`)
      await rename(tmp, dest)
      await fsyncDir(dirname(dest))
    } catch (err) {
      await fh.close().catch(() => {}) // already closed when the failure came after the sync; the error below is rethrown
      await rm(tmp, { force: true })
      throw err
    }
    return result
  }
}

function dedupe (chunks: Array<{ digest: string, size: number }>): Array<{ digest: string, size: number }> {
  const seen = new Set<string>()
  return chunks.filter(c => { if (seen.has(c.digest)) return false; seen.add(c.digest); return true })
}

async function runLimited<T> (items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items]
  const worker = async (): Promise<void> => {
    for (let it = queue.shift(); it !== undefined; it = queue.shift()) await fn(it)
  }
  await Promise.all(Array.from({ length: Math.min(limit, queue.length) }, worker))
}
