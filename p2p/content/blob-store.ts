// Content-addressed blob store on disk. Its root is also an OCI image layout
// (`oci-layout`, `blobs/sha256/<hex>`), so images pulled here can be read by
// anything that reads a layout. A blob becomes visible only by an atomic
// rename after its digest was verified and its bytes fsync'd; pieces of a
// blob still being pulled live in `partial/<hex>/` with a persisted
// have-bitfield, so a pull resumes after kill -9 and a crash at any point
// leaves no half blob under `blobs/`.
import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createReadStream, type ReadStream } from 'node:fs'
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { decode } from 'cbor-x'
import { Bitfield } from './bitfield.js'
import { BlobRefs } from './blob-refs.js'
import { digestHex } from './digest.js'
import { BlobNotFoundError, DigestMismatchError, QuotaExceededError, SizeMismatchError } from './errors.js'
import { fsyncDir, writeFileAtomic } from './fs-atomic.js'
import { PartialBlob, PartialStateSchema } from './partial-blob.js'
import { PieceManifests } from './piece-manifests.js'
import { DEFAULT_PIECE_SIZE, pieceCount, type PieceManifest } from './pieces.js'

export interface BlobStoreOptions {
  /** Root directory; created if missing. */
  root: string
  /** Disk quota for blobs plus partial blobs, in bytes; unreferenced blobs are evicted least recently used first to stay under it. Default: no quota. */
  quotaBytes?: number
  /** Piece size used for piece manifests derived here. */
  pieceSize?: number
  /** Told of failed writes nobody awaits (a partial's background flush, a last-access time). */
  log?: (msg: string) => void
}

export interface BlobInfo {
  digest: string
  size: number
  /** How many owners (images, objects) pin this blob. */
  refs: number
  lastAccess: number
}

export interface StoreUsage {
  blobBytes: number
  blobs: number
  partialBytes: number
  partials: number
  quotaBytes: number | null
}

export interface BlobStoreEvents {
  added: [digest: string, size: number]
  removed: [digest: string]
}

export type BlobSource = Uint8Array | AsyncIterable<Uint8Array> | Readable

/** A blob written by `stage`: `tmp` absent when the store already had it. */
export interface StagedBlob { digest: string, size: number, tmp?: string }

/** Staged temp files fsync'd at once by `commitStaged`. */
const STAGED_SYNC_CONCURRENCY = 8

async function runEach<T> (items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => { while (next < items.length) await fn(items[next++] as T) }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** Last-access times are written to disk at most this often per blob (they only order eviction). */
const ACCESS_PERSIST_MS = 60_000

export class BlobStore {
  readonly root: string
  readonly quotaBytes: number | null
  readonly pieceSize: number
  readonly events = new EventEmitter<BlobStoreEvents>()
  private readonly blobs = new Map<string, { size: number, lastAccess: number, persistedAccess: number }>()
  private readonly partials = new Map<string, PartialBlob>()
  private readonly partialOpening = new Map<string, Promise<PartialBlob>>()
  private refs!: BlobRefs
  private readonly manifests: PieceManifests
  private readonly log: ((msg: string) => void) | undefined

  private constructor (opts: BlobStoreOptions) {
    this.root = opts.root
    this.quotaBytes = opts.quotaBytes ?? null
    this.pieceSize = opts.pieceSize ?? DEFAULT_PIECE_SIZE
    this.manifests = new PieceManifests(this.metaDir, this.tmpDir)
    this.log = opts.log
  }

  static async open (opts: BlobStoreOptions): Promise<BlobStore> {
    const s = new BlobStore(opts)
    await s.load()
    return s
  }

  private get blobDir (): string { return join(this.root, 'blobs', 'sha256') }
  private get tmpDir (): string { return join(this.root, 'tmp') }
  private get partialDir (): string { return join(this.root, 'partial') }
  private get metaDir (): string { return join(this.root, 'meta', 'pieces') }

  blobPath (digest: string): string {
    return join(this.blobDir, digestHex(digest))
  }

  private async load (): Promise<void> {
    for (const d of [this.blobDir, this.tmpDir, this.partialDir, this.metaDir]) await mkdir(d, { recursive: true })
    await writeFileAtomic(join(this.root, 'oci-layout'), Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })), this.tmpDir)
    // Whatever is in tmp/ is a write that never finished.
    await rm(this.tmpDir, { recursive: true, force: true })
    await mkdir(this.tmpDir, { recursive: true })
    for (const name of await readdir(this.blobDir)) {
      if (!/^[a-f0-9]{64}$/.test(name)) continue
      const st = await stat(join(this.blobDir, name))
      this.blobs.set(`sha256:${name}`, { size: st.size, lastAccess: st.mtimeMs, persistedAccess: st.mtimeMs })
    }
    this.refs = await BlobRefs.load(join(this.root, 'refs.json'), this.tmpDir)
  }

  async has (digest: string): Promise<boolean> {
    digestHex(digest)
    return this.blobs.has(digest)
  }

  hasSync (digest: string): boolean {
    return this.blobs.has(digest)
  }

  /** Size of a complete blob, or undefined when it is not held. */
  sizeSync (digest: string): number | undefined {
    return this.blobs.get(digest)?.size
  }

  async stat (digest: string): Promise<BlobInfo | undefined> {
    const b = this.blobs.get(digest)
    if (b === undefined) return undefined
    return { digest, size: b.size, refs: this.refCount(digest), lastAccess: b.lastAccess }
  }

  async list (): Promise<BlobInfo[]> {
    return [...this.blobs.entries()].map(([digest, b]) => ({ digest, size: b.size, refs: this.refCount(digest), lastAccess: b.lastAccess }))
  }

  usage (): StoreUsage {
    let blobBytes = 0
    for (const b of this.blobs.values()) blobBytes += b.size
    let partialBytes = 0
    for (const p of this.partials.values()) partialBytes += p.size
    return { blobBytes, blobs: this.blobs.size, partialBytes, partials: this.partials.size, quotaBytes: this.quotaBytes }
  }

  /** `end` is inclusive, as in `fs.createReadStream`. */
  createReadStream (digest: string, range: { start?: number, end?: number } = {}): ReadStream {
    const b = this.blobs.get(digest)
    if (b === undefined) throw new BlobNotFoundError(`blob ${digest} is not in the store`)
    this.touch(digest)
    return createReadStream(this.blobPath(digest), { start: range.start, end: range.end, highWaterMark: 1024 * 1024 })
  }

  /** A handle to read a complete blob; it stays readable if the blob is evicted meanwhile. The caller closes it. */
  async openRead (digest: string): Promise<FileHandle> {
    if (!this.blobs.has(digest)) throw new BlobNotFoundError(`blob ${digest} is not in the store`)
    this.touch(digest)
    return await open(this.blobPath(digest), 'r')
  }

  async readAll (digest: string): Promise<Uint8Array> {
    if (!this.blobs.has(digest)) throw new BlobNotFoundError(`blob ${digest} is not in the store`)
    this.touch(digest)
    return new Uint8Array(await readFile(this.blobPath(digest)))
  }

  /** Reads `length` bytes at `start` of a complete blob: into the start of `into` when given (it must be large enough), else into a new buffer. */
  async readRange (digest: string, start: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const b = this.blobs.get(digest)
    if (b === undefined) throw new BlobNotFoundError(`blob ${digest} is not in the store`)
    if (start < 0 || start + length > b.size) throw new RangeError(`range ${start}+${length} is outside ${digest} (${b.size} bytes)`)
    if (into !== undefined && into.byteLength < length) throw new RangeError(`a ${into.byteLength}-byte buffer cannot hold ${length} bytes`)
    this.touch(digest)
    const fh = await open(this.blobPath(digest), 'r')
    try {
      // Not zero-filled: every byte is read below or the call throws.
      const buf = into !== undefined ? into.subarray(0, length) : Buffer.allocUnsafe(length)
      let off = 0
      while (off < length) {
        const { bytesRead } = await fh.read(buf, off, length - off, start + off)
        if (bytesRead === 0) throw new SizeMismatchError(`blob ${digest} is shorter than recorded`)
        off += bytesRead
      }
      return buf
    } finally {
      await fh.close()
    }
  }

  /**
   * Writes a blob: into tmp/, hashed on the way, fsync'd, checked against
   * `expectedDigest` (and `size` when given), then renamed into place and the
   * directory fsync'd. A blob already present is not written again.
   */
  async put (source: BlobSource, expectedDigest: string, opts: { size?: number } = {}): Promise<BlobInfo> {
    digestHex(expectedDigest)
    const existing = this.blobs.get(expectedDigest)
    if (existing !== undefined) {
      if (source instanceof Readable) source.destroy()
      return { digest: expectedDigest, size: existing.size, refs: this.refCount(expectedDigest), lastAccess: existing.lastAccess }
    }
    if (opts.size !== undefined) await this.ensureSpace(opts.size)
    const tmp = join(this.tmpDir, `${digestHex(expectedDigest)}.${randomBytes(6).toString('hex')}`)
    const fh = await open(tmp, 'wx')
    let size = 0
    const hash = createHash('sha256')
    try {
      try {
        const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = source instanceof Uint8Array ? [source] : source
        for await (const chunk of chunks) {
          const c = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk as ArrayBuffer)
          hash.update(c)
          size += c.length
          if (opts.size !== undefined && size > opts.size) throw new SizeMismatchError(`blob ${expectedDigest} is larger than the expected ${opts.size} bytes`)
          let off = 0
          while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten
        }
        await fh.sync()
      } finally {
        await fh.close()
      }
      const got = `sha256:${hash.digest('hex')}`
      if (got !== expectedDigest) throw new DigestMismatchError(`blob content hashes to ${got}, expected ${expectedDigest}`)
      if (opts.size !== undefined && size !== opts.size) throw new SizeMismatchError(`blob ${expectedDigest} is ${size} bytes, expected ${opts.size}`)
      if (opts.size === undefined) await this.ensureSpace(size)
      await rename(tmp, this.blobPath(expectedDigest))
      await fsyncDir(this.blobDir)
    } catch (err) {
      await rm(tmp, { force: true })
      throw err
    }
    return this.record(expectedDigest, size)
  }

  /**
   * Moves a file the caller wrote and hashed (an upload, verified against
   * `digest` as its bytes arrived) into the store: fsync'd, renamed into
   * place, the directory fsync'd — without reading and hashing it again.
   * `path` must be on the store's filesystem; it is removed when the blob is
   * present already.
   */
  async adopt (path: string, digest: string, size: number): Promise<BlobInfo> {
    digestHex(digest)
    const existing = this.blobs.get(digest)
    if (existing !== undefined) {
      await rm(path, { force: true })
      return { digest, size: existing.size, refs: this.refCount(digest), lastAccess: existing.lastAccess }
    }
    await this.ensureSpace(size)
    const fh = await open(path, 'r+')
    try { await fh.sync() } finally { await fh.close() }
    await rename(path, this.blobPath(digest))
    await fsyncDir(this.blobDir)
    return this.record(digest, size)
  }

  /**
   * Stages a blob for a later `commitStaged`: its bytes written to a temp
   * file, not fsync'd, not visible. Nothing but the caller knows of it; a
   * crash leaves only the temp file, which the next open deletes.
   */
  async stage (data: Uint8Array): Promise<StagedBlob> {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`
    if (this.blobs.has(digest)) return { digest, size: data.length }
    const tmp = join(this.tmpDir, `${digestHex(digest)}.${randomBytes(6).toString('hex')}`)
    try {
      const fh = await open(tmp, 'wx', 0o600)
      try {
        let off = 0
        while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten
      } finally {
        await fh.close()
      }
    } catch (err) {
      await rm(tmp, { force: true })
      throw err
    }
    return { digest, size: data.length, tmp }
  }

  /**
   * Makes staged blobs visible, durably: every temp file fsync'd (several at
   * once), renamed into place, then one fsync of the directory — instead of
   * two fsyncs per blob. Blobs already present are not written again.
   */
  async commitStaged (staged: StagedBlob[]): Promise<void> {
    const fresh = staged.filter((b): b is Required<StagedBlob> => b.tmp !== undefined)
    // A blob that was here at stage time (not written again) may have been evicted or collected since.
    const gone = staged.find(b => b.tmp === undefined && !this.blobs.has(b.digest))
    if (gone !== undefined) throw new BlobNotFoundError(`blob ${gone.digest} was removed while the object naming it was staged`)
    await this.ensureSpace(fresh.filter(b => !this.blobs.has(b.digest)).reduce((n, b) => n + b.size, 0))
    await runEach(fresh, STAGED_SYNC_CONCURRENCY, async b => {
      const fh = await open(b.tmp, 'r+')
      try { await fh.sync() } finally { await fh.close() }
    })
    for (const b of fresh) {
      if (this.blobs.has(b.digest)) { await rm(b.tmp, { force: true }); continue }
      await rename(b.tmp, this.blobPath(b.digest))
    }
    if (fresh.length > 0) await fsyncDir(this.blobDir)
    for (const b of fresh) if (!this.blobs.has(b.digest)) this.record(b.digest, b.size) // a chunk twice in one object: recorded once
  }

  /** Deletes staged blobs' temp files (a body that failed its checks). */
  async discardStaged (staged: StagedBlob[]): Promise<void> {
    for (const b of staged) if (b.tmp !== undefined) await rm(b.tmp, { force: true })
  }

  private record (digest: string, size: number): BlobInfo {
    const now = Date.now()
    this.blobs.set(digest, { size, lastAccess: now, persistedAccess: now })
    this.events.emit('added', digest, size)
    return { digest, size, refs: this.refCount(digest), lastAccess: now }
  }

  /** Removes a blob even if pinned (pins stay, so a later pull restores it). */
  async delete (digest: string): Promise<boolean> {
    digestHex(digest)
    if (!this.blobs.has(digest)) return false
    this.blobs.delete(digest)
    await rm(this.blobPath(digest), { force: true })
    await this.manifests.forget(digest)
    await fsyncDir(this.blobDir)
    this.events.emit('removed', digest)
    return true
  }

  // ---- references (blob-refs.ts) --------------------------------------------

  refCount (digest: string): number {
    return this.refs.count(digest)
  }

  /** Pins `digests` under `owner` (e.g. `image:<ref>`, `object:<id>`), replacing that owner's earlier pins. */
  async pin (owner: string, digests: string[]): Promise<void> {
    await this.refs.pin(owner, digests)
  }

  async unpin (owner: string): Promise<void> {
    await this.refs.unpin(owner)
  }

  owners (): Map<string, string[]> {
    return this.refs.owners()
  }

  /** Deletes every unreferenced blob; returns the digests removed. */
  async gc (): Promise<string[]> {
    const removed: string[] = []
    for (const digest of [...this.blobs.keys()]) {
      if (this.refCount(digest) === 0 && await this.delete(digest)) removed.push(digest)
    }
    return removed
  }

  /** Evicts unreferenced blobs, least recently used first, until `bytes` more fit under the quota. */
  async ensureSpace (bytes: number): Promise<void> {
    if (this.quotaBytes === null) return
    const used = (): number => { const u = this.usage(); return u.blobBytes + u.partialBytes }
    if (used() + bytes <= this.quotaBytes) return
    const candidates = [...this.blobs.entries()].filter(([d]) => this.refCount(d) === 0).sort((a, b) => a[1].lastAccess - b[1].lastAccess)
    const evictable = candidates.reduce((n, [, b]) => n + b.size, 0)
    if (used() - evictable + bytes > this.quotaBytes) {
      throw new QuotaExceededError(`storing ${bytes} bytes would exceed the blob store quota of ${this.quotaBytes} bytes (${used() - evictable} used by pinned blobs and pulls in progress); raise the quota or remove images`)
    }
    for (const [digest] of candidates) {
      if (used() + bytes <= this.quotaBytes) break
      await this.delete(digest)
    }
    if (used() + bytes > this.quotaBytes) {
      throw new QuotaExceededError(`storing ${bytes} bytes would exceed the blob store quota of ${this.quotaBytes} bytes (${used()} used by pinned blobs and pulls in progress); raise the quota or remove images`)
    }
  }

  private touch (digest: string): void {
    const b = this.blobs.get(digest)
    if (b === undefined) return
    b.lastAccess = Date.now()
    if (b.lastAccess - b.persistedAccess > ACCESS_PERSIST_MS) {
      b.persistedAccess = b.lastAccess
      const t = new Date(b.lastAccess)
      utimes(this.blobPath(digest), t, t).catch((err: NodeJS.ErrnoException) => {
        // ENOENT: evicted meanwhile. Otherwise only eviction order suffers, but the disk may be failing.
        if (err.code !== 'ENOENT') this.log?.(`blob store: recording the last access of ${digest} failed: ${err.message}`)
      })
    }
  }

  // ---- piece manifests (piece-manifests.ts) ---------------------------------

  /** The piece manifest of a complete blob, derived on first use and kept in meta/pieces/. */
  async pieceManifest (digest: string, pieceSize = this.pieceSize): Promise<PieceManifest> {
    const b = this.blobs.get(digest)
    if (b === undefined) throw new BlobNotFoundError(`blob ${digest} is not in the store`)
    return await this.manifests.get(digest, b.size, this.blobPath(digest), pieceSize)
  }

  async savePieceManifest (m: PieceManifest): Promise<void> {
    await this.manifests.save(m)
  }

  // ---- partial blobs --------------------------------------------------------

  /** Partial blobs on disk (pulls that were interrupted or are in progress). */
  async listPartials (): Promise<string[]> {
    return (await readdir(this.partialDir)).filter(n => /^[a-f0-9]{64}$/.test(n)).map(n => `sha256:${n}`)
  }

  getPartial (digest: string): PartialBlob | undefined {
    return this.partials.get(digest)
  }

  /**
   * Opens (or resumes) the partial blob of `digest`. A partial left by an
   * earlier process with the same size and piece size keeps its pieces;
   * one that disagrees is discarded.
   */
  async openPartial (digest: string, size: number, pieceSize = this.pieceSize): Promise<PartialBlob> {
    digestHex(digest)
    const open = this.partials.get(digest)
    if (open !== undefined && open.size === size && open.pieceSize === pieceSize) return open
    const pending = this.partialOpening.get(digest)
    if (pending !== undefined) return await pending
    const p = this.doOpenPartial(digest, size, pieceSize)
    this.partialOpening.set(digest, p)
    try {
      return await p
    } finally {
      this.partialOpening.delete(digest)
    }
  }

  private async doOpenPartial (digest: string, size: number, pieceSize: number): Promise<PartialBlob> {
    const old = this.partials.get(digest)
    if (old !== undefined) await old.discard()
    const dir = join(this.partialDir, digestHex(digest))
    let state: { have: Bitfield, hashes: Uint8Array } | undefined
    try {
      const raw = PartialStateSchema.parse(decode(await readFile(join(dir, 'state'))))
      if (raw.size === size && raw.pieceSize === pieceSize) {
        const n = pieceCount(size, pieceSize)
        state = { have: new Bitfield(n, raw.have), hashes: raw.hashes }
      }
    } catch { /* no state, or unreadable: start over */ }
    if (state === undefined) {
      await rm(dir, { recursive: true, force: true })
      await this.ensureSpace(size)
      await mkdir(dir, { recursive: true })
    }
    const p = await PartialBlob.open({
      digest,
      dir,
      size,
      pieceSize,
      state,
      tmpDir: this.tmpDir,
      log: this.log,
      onComplete: async (dataPath) => {
        await rename(dataPath, this.blobPath(digest))
        await fsyncDir(this.blobDir)
        await rm(dir, { recursive: true, force: true })
        this.partials.delete(digest)
        this.record(digest, size)
      },
      onDiscard: async () => {
        this.partials.delete(digest)
        await rm(dir, { recursive: true, force: true })
      }
    })
    this.partials.set(digest, p)
    return p
  }

  /** Closes open partial files (their pieces stay on disk for a later resume). */
  async close (): Promise<void> {
    for (const p of [...this.partials.values()]) await p.close()
    this.partials.clear()
    await this.refs.flushed()
  }
}
