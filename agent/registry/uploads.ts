// Blob uploads in progress: one temp file per upload under the blob store's
// tmp/, its bytes hashed as they arrive (the running sha256 is kept, so the
// final digest check reads nothing again). An upload survives a client that
// disconnects (bytes received so far are kept; `GET` tells the offset) and an
// agent restart: the bytes live in the store's uploads/ (not tmp/, which the
// store empties on open) beside a small record of the repository; an id
// this process does not know is taken up again from there on its first
// request (the hash is rebuilt by reading the bytes once). A finished upload
// whose hash matches its digest is moved into the store as it is
// (BlobStore.adopt: fsync and rename, no second read); a mismatch stores
// nothing.
import { createHash, randomUUID, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { z } from 'zod'
import type { BlobStore } from '../../p2p/content/blob-store.js'
import { MirrorRequestError } from '../mirror/errors.js'
import { admitChunk, MAX_UPLOAD_BYTES, type ChunkRange } from './upload-state.js'

/** Uploads open at once on one agent. */
export const MAX_UPLOADS = 256
/** An upload no request touched for this long is dropped. */
export const UPLOAD_IDLE_MS = 60 * 60 * 1000

/** Upload ids are ours (randomUUID): anything else names no file. */
const UPLOAD_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const UploadRecordSchema = z.object({ repo: z.string().min(1).max(512) })

interface Upload {
  id: string
  repo: string
  path: string
  fh: FileHandle
  hash: Hash
  offset: number
  busy: boolean
  touched: number
}

export class Uploads {
  private readonly open = new Map<string, Upload>()
  /** Uploads being taken up again after a restart (two requests for one id share it). */
  private readonly recovering = new Map<string, Promise<Upload | undefined>>()
  private ready: Promise<void> | undefined

  constructor (private readonly store: BlobStore, private readonly maxBytes = MAX_UPLOAD_BYTES) {}

  private get dir (): string { return join(this.store.root, 'uploads') }
  private dataPath (id: string): string { return join(this.dir, `upload-${id}`) }
  private recordPath (id: string): string { return join(this.dir, `upload-${id}.json`) }

  /** Creates uploads/ and removes what an earlier run left idle past UPLOAD_IDLE_MS (once per process). */
  private async prepare (): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 })
      const now = Date.now()
      for (const name of await readdir(this.dir)) {
        const st = await stat(join(this.dir, name)).catch(() => undefined) // removed meanwhile: nothing to expire
        if (st !== undefined && now - st.mtimeMs > UPLOAD_IDLE_MS) await rm(join(this.dir, name), { force: true })
      }
    })()
    await this.ready
  }

  async start (repo: string): Promise<{ id: string, offset: number }> {
    await this.prepare()
    this.expire()
    if (this.open.size >= MAX_UPLOADS) throw new MirrorRequestError(429, 'TOOMANYREQUESTS', `${MAX_UPLOADS} uploads are open on this agent; finish or cancel some`)
    const id = randomUUID()
    await writeFile(this.recordPath(id), JSON.stringify({ repo }), { mode: 0o600, flag: 'wx' })
    const fh = await open(this.dataPath(id), 'wx', 0o600)
    this.open.set(id, { id, repo, path: this.dataPath(id), fh, hash: createHash('sha256'), offset: 0, busy: false, touched: Date.now() })
    return { id, offset: 0 }
  }

  /** The upload `id` of `repo` (taken up again from disk after a restart), or BLOB_UPLOAD_UNKNOWN. */
  private async get (repo: string, id: string): Promise<Upload> {
    const u = this.open.get(id) ?? await this.recover(id)
    if (u === undefined || u.repo !== repo) throw new MirrorRequestError(404, 'BLOB_UPLOAD_UNKNOWN', `no upload ${JSON.stringify(id.slice(0, 64))} in ${repo}`)
    u.touched = Date.now()
    return u
  }

  /** An upload an earlier run of this agent started: its record, its bytes so far and their hash. */
  private async recover (id: string): Promise<Upload | undefined> {
    if (!UPLOAD_ID_RE.test(id) || this.open.size >= MAX_UPLOADS) return undefined
    let p = this.recovering.get(id)
    if (p === undefined) {
      p = (async (): Promise<Upload | undefined> => {
        await this.prepare()
        // No record (never started here, or expired): the caller answers BLOB_UPLOAD_UNKNOWN, as for any unknown id.
        const raw = await readFile(this.recordPath(id), 'utf8').catch(() => undefined)
        if (raw === undefined) return undefined
        let rec: z.infer<typeof UploadRecordSchema>
        try { rec = UploadRecordSchema.parse(JSON.parse(raw)) } catch { return undefined } // a damaged record: the upload starts again, as an unknown one
        const fh = await open(this.dataPath(id), 'r+').catch(() => undefined) // its bytes are gone: unknown too
        if (fh === undefined) return undefined
        const hash = createHash('sha256')
        let offset = 0
        try {
          for await (const chunk of createReadStream(this.dataPath(id)) as AsyncIterable<Buffer>) { hash.update(chunk); offset += chunk.length }
        } catch (err) {
          await fh.close().catch(() => {}) // the read's error is the one to report
          throw err
        }
        const u: Upload = { id, repo: rec.repo, path: this.dataPath(id), fh, hash, offset, busy: false, touched: Date.now() }
        this.open.set(id, u)
        return u
      })().finally(() => { this.recovering.delete(id) })
      this.recovering.set(id, p)
    }
    return await p
  }

  async status (repo: string, id: string): Promise<{ offset: number }> {
    return { offset: (await this.get(repo, id)).offset }
  }

  /**
   * Appends a chunk streamed from `body`. Bytes that arrive before the client
   * goes away are kept (the offset says how many), so it can resume.
   */
  async append (repo: string, id: string, body: Readable, range: ChunkRange | undefined, contentLength: number | undefined): Promise<{ offset: number }> {
    const u = await this.get(repo, id)
    if (u.busy) throw new MirrorRequestError(409, 'BLOB_UPLOAD_INVALID', `upload ${id} is receiving another chunk`)
    const allowed = admitChunk(u.offset, range, contentLength, this.maxBytes)
    u.busy = true
    const start = u.offset
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (u.offset - start + chunk.length > allowed) throw new MirrorRequestError(400, 'BLOB_UPLOAD_INVALID', `the chunk carries more than the ${allowed} bytes it declared`)
        await u.fh.write(chunk, 0, chunk.length, u.offset)
        u.hash.update(chunk)
        u.offset += chunk.length
      }
    } catch (err) {
      // A client gone mid-chunk: what arrived stays; the client asks GET for the offset.
      if (err instanceof MirrorRequestError) throw err
    } finally {
      u.busy = false
    }
    const declared = range !== undefined ? range.end - range.start + 1 : contentLength
    if (declared !== undefined && u.offset - start !== declared) throw new MirrorRequestError(400, 'BLOB_UPLOAD_INVALID', `the chunk declared ${declared} bytes but ${u.offset - start} arrived (the upload holds ${u.offset}; resume from there)`)
    return { offset: u.offset }
  }

  /**
   * Ends an upload: checks its bytes against `digest` and stores the blob.
   * A mismatch drops the upload and stores nothing (`DIGEST_INVALID`).
   */
  async finish (repo: string, id: string, digest: string): Promise<{ size: number }> {
    const u = await this.get(repo, id)
    if (u.busy) throw new MirrorRequestError(409, 'BLOB_UPLOAD_INVALID', `upload ${id} is receiving a chunk`)
    u.busy = true
    try {
      const got = 'sha256:' + u.hash.copy().digest('hex')
      if (got !== digest) {
        await this.drop(u)
        throw new MirrorRequestError(400, 'DIGEST_INVALID', `the uploaded ${u.offset} bytes hash to ${got}, not ${digest}; nothing was stored`)
      }
      // The running hash covered every byte written: the file moves into the store as it is.
      this.open.delete(u.id)
      await u.fh.close()
      await this.store.adopt(u.path, digest, u.offset)
      await this.drop(u)
      return { size: u.offset }
    } finally {
      u.busy = false
    }
  }

  async cancel (repo: string, id: string): Promise<void> {
    await this.drop(await this.get(repo, id))
  }

  private async drop (u: Upload): Promise<void> {
    this.open.delete(u.id)
    await u.fh.close().catch(() => {}) // the file is removed next either way
    await rm(u.path, { force: true })
    await rm(this.recordPath(u.id), { force: true })
  }

  private expire (): void {
    const now = Date.now()
    for (const u of this.open.values()) if (!u.busy && now - u.touched > UPLOAD_IDLE_MS) void this.drop(u)
  }

  get size (): number { return this.open.size }

  /** Agent stop: files are closed and kept, so the uploads resume after a restart (or are removed when idle past UPLOAD_IDLE_MS). */
  async close (): Promise<void> {
    await Promise.allSettled([...this.open.values()].map(async u => { this.open.delete(u.id); await u.fh.close() }))
  }
}
