// The S3 endpoint's part of the Raft state: buckets, the bucket/key → object
// records, multipart uploads in progress and the S3 access keys. Every agent
// applies the same commands, so a PUT through one agent is read and listed
// through any other once committed (read-after-write, list-after-write).
// Apply re-checks each precondition (bucket exists, bucket empty, upload
// open), so two agents racing on one bucket cannot both win.
import { z } from 'zod'

/** S3's limit on key length, in UTF-8 bytes. */
export const MAX_S3_KEY_BYTES = 1024
/** Parts of one multipart upload (S3's limit). */
export const MAX_PARTS = 10_000
export const MAX_HOLDERS = 16

const Bucket = z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'a bucket name: 3-63 of a-z 0-9 . -')
const Key = z.string().min(1).refine(k => Buffer.byteLength(k) <= MAX_S3_KEY_BYTES, `at most ${MAX_S3_KEY_BYTES} bytes`)
const Id = z.string().regex(/^sha256:[0-9a-f]{64}$/)
const Holders = z.array(z.string().max(128)).max(MAX_HOLDERS)
const Req = z.string().max(64)

export const S3ObjectRecordSchema = z.object({
  id: Id,
  size: z.number().int().nonnegative(),
  etag: z.string().regex(/^[0-9a-f]{32}(-\d{1,5})?$/),
  modified: z.number().int().nonnegative(),
  contentType: z.string().max(256).optional(),
  /** User metadata (x-amz-meta-*), names lower case. */
  meta: z.record(z.string().max(128), z.string().max(2048)).optional(),
  /** Checksums the client sent and we verified, by algorithm (base64). */
  checksums: z.record(z.string().max(16), z.string().max(128)).optional(),
  holders: Holders
})
export type S3ObjectRecord = z.infer<typeof S3ObjectRecordSchema>

export const S3PartSchema = z.object({
  n: z.number().int().min(1).max(MAX_PARTS),
  id: Id,
  size: z.number().int().nonnegative(),
  etag: z.string().regex(/^[0-9a-f]{32}$/),
  modified: z.number().int().nonnegative(),
  holders: Holders
})
export type S3Part = z.infer<typeof S3PartSchema>

export const S3KeySchema = z.object({
  accessKey: z.string().regex(/^[A-Z0-9]{16,32}$/),
  secret: z.string().min(30).max(64),
  bucket: Bucket.optional(),
  readOnly: z.boolean(),
  created: z.number().int().nonnegative()
})
export type S3Key = z.infer<typeof S3KeySchema>

export const S3CommandSchemas = {
  's3.key.put': z.object({ op: z.literal('s3.key.put'), req: Req, key: S3KeySchema }),
  's3.key.delete': z.object({ op: z.literal('s3.key.delete'), req: Req, accessKey: z.string().max(32) }),
  's3.bucket.create': z.object({ op: z.literal('s3.bucket.create'), req: Req, bucket: Bucket, replicas: z.number().int().min(0).max(MAX_HOLDERS), created: z.number().int().nonnegative() }),
  's3.bucket.delete': z.object({ op: z.literal('s3.bucket.delete'), req: Req, bucket: Bucket }),
  's3.object.put': z.object({ op: z.literal('s3.object.put'), req: Req, bucket: Bucket, key: Key, record: S3ObjectRecordSchema }),
  's3.object.delete': z.object({ op: z.literal('s3.object.delete'), req: Req, bucket: Bucket, key: Key }),
  's3.upload.create': z.object({ op: z.literal('s3.upload.create'), req: Req, bucket: Bucket, key: Key, uploadId: z.string().regex(/^[0-9a-f]{32}$/), initiated: z.number().int().nonnegative(), contentType: z.string().max(256).optional(), meta: S3ObjectRecordSchema.shape.meta }),
  's3.upload.part': z.object({ op: z.literal('s3.upload.part'), req: Req, uploadId: z.string().max(32), part: S3PartSchema }),
  's3.upload.complete': z.object({ op: z.literal('s3.upload.complete'), req: Req, uploadId: z.string().max(32), record: S3ObjectRecordSchema }),
  's3.upload.abort': z.object({ op: z.literal('s3.upload.abort'), req: Req, uploadId: z.string().max(32) }),
  /** Repair: the object's holders after copies were made; applies only while the key still names that object. */
  's3.object.holders': z.object({ op: z.literal('s3.object.holders'), req: Req, bucket: Bucket, key: Key, id: Id, holders: Holders })
}
export type S3Command = z.infer<typeof S3CommandSchemas[keyof typeof S3CommandSchemas]>

export interface S3Bucket { name: string, replicas: number, created: number, objects: Map<string, S3ObjectRecord> }
export interface S3Upload { uploadId: string, bucket: string, key: string, initiated: number, contentType?: string, meta?: Record<string, string>, parts: Map<number, S3Part> }

type Result = { ok: true } | { ok: false, reason: string }

/** Reasons a command fails at apply; the endpoint maps them to S3 error codes. */
export const S3_REASONS = { noBucket: 'NoSuchBucket', exists: 'BucketAlreadyOwnedByYou', notEmpty: 'BucketNotEmpty', noUpload: 'NoSuchUpload', noKey: 'NoSuchKey' } as const

const SnapshotSchema = z.object({
  keys: z.array(S3KeySchema),
  buckets: z.array(z.object({ name: z.string(), replicas: z.number(), created: z.number(), objects: z.array(z.tuple([z.string(), S3ObjectRecordSchema])) })),
  uploads: z.array(z.object({ uploadId: z.string(), bucket: z.string(), key: z.string(), initiated: z.number(), contentType: z.string().optional(), meta: S3ObjectRecordSchema.shape.meta, parts: z.array(S3PartSchema) }))
})

export class S3Table {
  private keys = new Map<string, S3Key>()
  private buckets = new Map<string, S3Bucket>()
  private uploads = new Map<string, S3Upload>()
  /** Told of each object id a record, part or upload stopped naming (the collector frees it if nothing names it later). */
  onRelease: ((id: string) => void) | undefined

  key (accessKey: string): S3Key | undefined { return this.keys.get(accessKey) }
  listKeys (): S3Key[] { return [...this.keys.values()].sort((a, b) => a.created - b.created) }
  bucket (name: string): S3Bucket | undefined { return this.buckets.get(name) }
  listBuckets (): S3Bucket[] { return [...this.buckets.values()].sort((a, b) => a.name < b.name ? -1 : 1) }
  object (bucket: string, key: string): S3ObjectRecord | undefined { return this.buckets.get(bucket)?.objects.get(key) }
  upload (uploadId: string): S3Upload | undefined { return this.uploads.get(uploadId) }
  allUploads (): Iterable<S3Upload> { return this.uploads.values() }
  listUploads (bucket: string): S3Upload[] { return [...this.uploads.values()].filter(u => u.bucket === bucket).sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated - b.initiated) }
  /** Every object record, for repair and `object status`. */
  * allObjects (): Iterable<{ bucket: string, key: string, record: S3ObjectRecord, replicas: number }> {
    for (const b of this.buckets.values()) for (const [key, record] of b.objects) yield { bucket: b.name, key, record, replicas: b.replicas }
  }

  private released (id: string | undefined, keep?: string): void {
    if (id !== undefined && id !== keep) this.onRelease?.(id)
  }

  apply (cmd: S3Command): Result {
    switch (cmd.op) {
      case 's3.key.put': this.keys.set(cmd.key.accessKey, cmd.key); return { ok: true }
      case 's3.key.delete': return this.keys.delete(cmd.accessKey) ? { ok: true } : { ok: false, reason: 'NoSuchKey' }
      case 's3.bucket.create':
        if (this.buckets.has(cmd.bucket)) return { ok: false, reason: S3_REASONS.exists }
        this.buckets.set(cmd.bucket, { name: cmd.bucket, replicas: cmd.replicas, created: cmd.created, objects: new Map() })
        return { ok: true }
      case 's3.bucket.delete': {
        const b = this.buckets.get(cmd.bucket)
        if (b === undefined) return { ok: false, reason: S3_REASONS.noBucket }
        if (b.objects.size > 0 || [...this.uploads.values()].some(u => u.bucket === cmd.bucket)) return { ok: false, reason: S3_REASONS.notEmpty }
        this.buckets.delete(cmd.bucket)
        return { ok: true }
      }
      case 's3.object.put': {
        const b = this.buckets.get(cmd.bucket)
        if (b === undefined) return { ok: false, reason: S3_REASONS.noBucket }
        this.released(b.objects.get(cmd.key)?.id, cmd.record.id)
        b.objects.set(cmd.key, cmd.record)
        return { ok: true }
      }
      case 's3.object.delete': {
        const b = this.buckets.get(cmd.bucket)
        if (b === undefined) return { ok: false, reason: S3_REASONS.noBucket }
        this.released(b.objects.get(cmd.key)?.id)
        b.objects.delete(cmd.key)
        return { ok: true }
      }
      case 's3.upload.create':
        if (!this.buckets.has(cmd.bucket)) return { ok: false, reason: S3_REASONS.noBucket }
        this.uploads.set(cmd.uploadId, { uploadId: cmd.uploadId, bucket: cmd.bucket, key: cmd.key, initiated: cmd.initiated, ...(cmd.contentType !== undefined ? { contentType: cmd.contentType } : {}), ...(cmd.meta !== undefined ? { meta: cmd.meta } : {}), parts: new Map() })
        return { ok: true }
      case 's3.upload.part': {
        const u = this.uploads.get(cmd.uploadId)
        if (u === undefined) return { ok: false, reason: S3_REASONS.noUpload }
        this.released(u.parts.get(cmd.part.n)?.id, cmd.part.id)
        u.parts.set(cmd.part.n, cmd.part)
        return { ok: true }
      }
      case 's3.upload.complete': {
        const u = this.uploads.get(cmd.uploadId)
        if (u === undefined) return { ok: false, reason: S3_REASONS.noUpload }
        const b = this.buckets.get(u.bucket)
        if (b === undefined) return { ok: false, reason: S3_REASONS.noBucket }
        this.released(b.objects.get(u.key)?.id, cmd.record.id)
        for (const p of u.parts.values()) this.released(p.id, cmd.record.id)
        b.objects.set(u.key, cmd.record)
        this.uploads.delete(cmd.uploadId)
        return { ok: true }
      }
      case 's3.upload.abort': {
        const u = this.uploads.get(cmd.uploadId)
        if (u === undefined) return { ok: false, reason: S3_REASONS.noUpload }
        for (const p of u.parts.values()) this.released(p.id)
        this.uploads.delete(cmd.uploadId)
        return { ok: true }
      }
      case 's3.object.holders': {
        const rec = this.buckets.get(cmd.bucket)?.objects.get(cmd.key)
        if (rec === undefined || rec.id !== cmd.id) return { ok: false, reason: 'changed' }
        rec.holders = cmd.holders
        return { ok: true }
      }
    }
  }

  toSnapshot (): z.infer<typeof SnapshotSchema> {
    return {
      keys: this.listKeys(),
      buckets: this.listBuckets().map(b => ({ name: b.name, replicas: b.replicas, created: b.created, objects: [...b.objects].sort((x, y) => x[0] < y[0] ? -1 : 1) })),
      uploads: [...this.uploads.values()].map(u => ({ uploadId: u.uploadId, bucket: u.bucket, key: u.key, initiated: u.initiated, ...(u.contentType !== undefined ? { contentType: u.contentType } : {}), ...(u.meta !== undefined ? { meta: u.meta } : {}), parts: [...u.parts.values()] }))
    }
  }

  restore (raw: unknown): void {
    this.keys = new Map()
    this.buckets = new Map()
    this.uploads = new Map()
    if (raw === undefined || raw === null) return
    const s = SnapshotSchema.parse(raw)
    for (const k of s.keys) this.keys.set(k.accessKey, k)
    for (const b of s.buckets) this.buckets.set(b.name, { name: b.name, replicas: b.replicas, created: b.created, objects: new Map(b.objects) })
    for (const u of s.uploads) this.uploads.set(u.uploadId, { uploadId: u.uploadId, bucket: u.bucket, key: u.key, initiated: u.initiated, ...(u.contentType !== undefined ? { contentType: u.contentType } : {}), ...(u.meta !== undefined ? { meta: u.meta } : {}), parts: new Map(u.parts.map(p => [p.n, p])) })
  }
}
