// Object operations: PutObject, GetObject (Range), HeadObject, DeleteObject
// and CopyObject, plus routing to the multipart ones. A PUT's bytes are cut
// into FastCDC chunks as they arrive and staged (invisible, not yet fsync'd)
// while they are checked (signature, MD5, checksums); a body that passes is
// committed to the object store (one batch of fsyncs, pinned, K replicas),
// then its record goes into the Raft state: only a committed record makes
// the object visible, on every agent at once.
import { availableParallelism } from 'node:os'
import { receiveBody, type BodyStager, type ReceivedBody } from './body.js'
import type { S3Deps } from './deps.js'
import { reasonError, S3Error, s3err } from './errors.js'
import { objectHeaders, quoteEtag, sendEmpty, sendXml, isoDate } from './http.js'
import type { S3Request } from './http.js'
import { sendRange } from './object-read.js'
import { MAX_S3_KEY_BYTES, type S3ObjectRecord } from './s3-state.js'
import { safeDecode, scopeOf } from './sigv4.js'
import type { S3Stats } from './stats.js'

/**
 * Bodies received and chunked into the store at once: one per core, 2 to 4.
 * Each holds a FastCDC window (2 x the largest chunk, 8 MiB) and its hash
 * slots while its bytes stream in; clients send up to 10 parts at once, so
 * without this bound memory grows with their concurrency. A body is cut and
 * hashed on one core at a time, so more bodies than cores add memory, not
 * speed. Requests beyond it wait unread (TCP holds their bytes).
 */
export const MAX_CONCURRENT_STORES = Math.max(2, Math.min(4, availableParallelism()))

/** A counting semaphore: at most `limit` tasks run at once, the rest wait in order. */
export class Slots {
  private active = 0
  private readonly waiting: Array<() => void> = []
  constructor (private readonly limit: number) {}
  async run<T> (fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>(resolve => this.waiting.push(resolve))
    else this.active++
    try {
      return await fn()
    } finally {
      const next = this.waiting.shift()
      if (next !== undefined) next()
      else this.active--
    }
  }
}
const storeSlots = new Slots(MAX_CONCURRENT_STORES)
/**
 * Received bodies committing at once: fsyncs, the pin, replication to the
 * bucket's peers. That is waiting, not CPU, so it is not held to the receive
 * bound above (a small PUT spent most of its time there, and small PUTs ran
 * two at a time); this bound keeps the staged files waiting on disk few.
 */
export const MAX_CONCURRENT_COMMITS = 32
const commitSlots = new Slots(MAX_CONCURRENT_COMMITS)

/** User metadata (x-amz-meta-*) one object may carry, in bytes (S3's limit). */
export const MAX_USER_META_BYTES = 2048

export async function objectOp (deps: S3Deps, r: S3Request, stats: S3Stats): Promise<void> {
  if (Buffer.byteLength(r.key) > MAX_S3_KEY_BYTES) throw s3err.keyTooLong()
  if (r.query.has('tagging')) {
    // Tags are not kept: reads see none (aws-cli asks before a multipart copy), writes are not implemented.
    if (r.method !== 'GET') throw s3err.notImplemented('object tagging')
    r.op = 'GetObjectTagging'
    await deps.barrier(r.signal)
    if (deps.table().object(r.bucket, r.key) === undefined) throw s3err.noSuchKey(r.key)
    sendXml(r.res, 200, 'Tagging', { TagSet: '' })
    return
  }
  switch (r.method) {
    case 'PUT':
      if (r.req.headers['x-amz-copy-source'] !== undefined) { await copyObject(deps, r); return }
      await putObject(deps, r, stats)
      return
    case 'GET': case 'HEAD': await getObject(deps, r, stats); return
    case 'DELETE': {
      r.op = 'DeleteObject'
      const res = await deps.write({ op: 's3.object.delete', bucket: r.bucket, key: r.key }, r.signal)
      if (!res.ok) throw reasonError(res.reason, r.bucket, r.key)
      sendEmpty(r.res, 204)
      return
    }
    default: throw s3err.methodNotAllowed()
  }
}

/** The bucket's record, seen by this replica (after a barrier when not yet here). */
export async function needBucket (deps: S3Deps, r: S3Request): Promise<{ replicas: number }> {
  let b = deps.table().bucket(r.bucket)
  if (b === undefined) { await deps.barrier(r.signal); b = deps.table().bucket(r.bucket) }
  if (b === undefined) throw s3err.noSuchBucket(r.bucket)
  return b
}

export function stagerOf (deps: S3Deps): BodyStager {
  return {
    stage: async (source, signal) => await deps.objects.stageObject(source, signal !== undefined ? { signal } : {}),
    writer: () => deps.objects.stageWriter(),
    discard: async staged => { await deps.objects.discardObject(staged) }
  }
}

/**
 * Receives the body (or takes `received`, already staged) and stores it as
 * an object; a body that fails its checks leaves nothing staged.
 */
export async function storeBody (deps: S3Deps, r: S3Request, replicas: number, stats: S3Stats, received?: () => Promise<ReceivedBody>): Promise<ReceivedBody & { id: string, holders: string[] }> {
  const body = await storeSlots.run(async () => received !== undefined
    ? await received()
    : await receiveBody(r.req, {
      stager: stagerOf(deps),
      payloadHash: r.cred.payloadHash,
      signing: { key: r.signingKey, amzDate: r.cred.amzDate, scope: scopeOf(r.cred), seed: r.cred.signature },
      maxBytes: deps.config.max_put_bytes,
      signal: r.signal
    }))
  stats.bytesIn += body.size
  const put = await commitSlots.run(async () => await deps.objects.commitObject(body.staged, { replicas, name: '', signal: r.signal }))
  if (put.replicas.length < replicas) deps.log.warn({ bucket: r.bucket, key: r.key.slice(0, 200), id: put.id, replicas: put.replicas.length, want: replicas, errors: put.replicaErrors.slice(0, 3) }, 's3: object stored with fewer replicas than the bucket asks')
  return { ...body, id: put.id, holders: [deps.self, ...put.replicas] }
}

export function userMeta (r: S3Request): Record<string, string> | undefined {
  const meta: Record<string, string> = {}
  let bytes = 0
  for (const [k, v] of Object.entries(r.req.headers)) {
    if (!k.startsWith('x-amz-meta-') || v === undefined) continue
    const value = Array.isArray(v) ? v.join(',') : v
    bytes += k.length - 11 + value.length
    meta[k.slice(11)] = value
  }
  if (bytes > MAX_USER_META_BYTES) throw new S3Error(400, 'MetadataTooLarge', `user metadata is ${bytes} bytes, above ${MAX_USER_META_BYTES}`)
  return Object.keys(meta).length > 0 ? meta : undefined
}

function contentType (r: S3Request): string | undefined {
  const t = r.req.headers['content-type']
  return typeof t === 'string' && t.length <= 256 ? t : undefined
}

async function putObject (deps: S3Deps, r: S3Request, stats: S3Stats): Promise<void> {
  r.op = 'PutObject'
  const bucket = await needBucket(deps, r)
  const meta = userMeta(r)
  const type = contentType(r)
  const got = await storeBody(deps, r, bucket.replicas, stats)
  const record: S3ObjectRecord = {
    id: got.id, size: got.size, etag: got.md5, modified: Date.now(), holders: got.holders.slice(0, 16),
    ...(type !== undefined ? { contentType: type } : {}),
    ...(meta !== undefined ? { meta } : {}),
    ...(Object.keys(got.checksums).length > 0 ? { checksums: got.checksums } : {})
  }
  const res = await guard(deps, record.id, async () => await deps.write({ op: 's3.object.put', bucket: r.bucket, key: r.key, record }, r.signal))
  if (!res.ok) throw reasonError(res.reason, r.bucket, r.key)
  const headers: Record<string, string> = { etag: quoteEtag(got.md5) }
  for (const [alg, v] of Object.entries(got.checksums)) headers[`x-amz-checksum-${alg}`] = v
  sendEmpty(r.res, 200, headers)
}

async function copyObject (deps: S3Deps, r: S3Request): Promise<void> {
  r.op = 'CopyObject'
  const { bucket: sb, key: sk } = copySource(String(r.req.headers['x-amz-copy-source']))
  await deps.barrier(r.signal)
  const from = deps.table().object(sb, sk)
  if (deps.table().bucket(sb) === undefined) throw s3err.noSuchBucket(sb)
  if (from === undefined) throw s3err.noSuchKey(sk)
  if (deps.table().bucket(r.bucket) === undefined) throw s3err.noSuchBucket(r.bucket)
  const replace = r.req.headers['x-amz-metadata-directive'] === 'REPLACE'
  const meta = replace ? userMeta(r) : from.meta
  const type = replace ? contentType(r) : from.contentType
  // Objects are content-addressed: the copy is a new record naming the same object.
  const record: S3ObjectRecord = { ...from, modified: Date.now() }
  delete record.meta
  delete record.contentType
  if (meta !== undefined) record.meta = meta
  if (type !== undefined) record.contentType = type
  const res = await deps.write({ op: 's3.object.put', bucket: r.bucket, key: r.key, record }, r.signal)
  if (!res.ok) throw reasonError(res.reason, r.bucket, r.key)
  sendXml(r.res, 200, 'CopyObjectResult', { LastModified: isoDate(record.modified), ETag: quoteEtag(record.etag) })
}

/** x-amz-copy-source: `[/]BUCKET/KEY[?versionId=…]`, URL-encoded. */
export function copySource (header: string): { bucket: string, key: string } {
  const src = safeDecode(header.replace(/\?versionId=.*$/, '')).replace(/^\//, '')
  const slash = src.indexOf('/')
  if (slash <= 0 || slash === src.length - 1) throw s3err.invalidArgument('x-amz-copy-source must be BUCKET/KEY')
  return { bucket: src.slice(0, slash), key: src.slice(slash + 1) }
}

/** Runs a record's Raft write with its object held back from the collector. */
export async function guard<T> (deps: S3Deps, id: string, fn: () => Promise<T>): Promise<T> {
  return deps.collector === undefined ? await fn() : await deps.collector.storing(id, fn)
}

/** `bytes=A-B`, `bytes=A-`, `bytes=-N` → [start, end] inclusive; undefined: serve it all (absent or several ranges). */
export function parseRange (header: string | undefined, size: number): [number, number] | undefined {
  if (header === undefined) return undefined
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim())
  if (m === null) return undefined
  const [a, b] = [m[1]!, m[2]!]
  if (a === '' && b === '') return undefined
  let start: number, end: number
  if (a === '') { const n = Number(b); if (n === 0) throw s3err.invalidRange(size); start = Math.max(0, size - n); end = size - 1 } else { start = Number(a); end = b === '' ? size - 1 : Math.min(Number(b), size - 1) }
  if (start >= size || start > end) throw s3err.invalidRange(size)
  return [start, end]
}

async function getObject (deps: S3Deps, r: S3Request, stats: S3Stats): Promise<void> {
  const head = r.method === 'HEAD'
  r.op = head ? 'HeadObject' : 'GetObject'
  await deps.barrier(r.signal)
  if (deps.table().bucket(r.bucket) === undefined) throw s3err.noSuchBucket(r.bucket)
  const rec = deps.table().object(r.bucket, r.key)
  if (rec === undefined) throw s3err.noSuchKey(r.key)
  const range = parseRange(typeof r.req.headers.range === 'string' ? r.req.headers.range : undefined, rec.size)
  const headers = objectHeaders(rec, range === undefined && r.req.headers['x-amz-checksum-mode'] === 'ENABLED')
  for (const [q, h] of [['response-content-type', 'content-type'], ['response-content-disposition', 'content-disposition'], ['response-content-encoding', 'content-encoding'], ['response-content-language', 'content-language'], ['response-cache-control', 'cache-control'], ['response-expires', 'expires']] as const) {
    const v = r.query.get(q)
    if (v !== undefined) headers[h] = v
  }
  const inm = r.req.headers['if-none-match']
  if (typeof inm === 'string' && inm.split(',').map(s => s.trim()).includes(quoteEtag(rec.etag))) { sendEmpty(r.res, 304, { etag: quoteEtag(rec.etag) }); return }
  const im = r.req.headers['if-match']
  if (typeof im === 'string' && !im.split(',').map(s => s.trim()).some(t => t === '*' || t === quoteEtag(rec.etag))) throw new S3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
  const [start, end] = range ?? [0, rec.size - 1]
  const length = rec.size === 0 ? 0 : end - start + 1
  if (range !== undefined) headers['content-range'] = `bytes ${start}-${end}/${rec.size}`
  headers['content-length'] = String(length)
  if (head) { r.res.writeHead(200, headers); r.res.end(); return }
  const fetched = await deps.fetchObject(rec.id, rec.holders, r.signal)
  r.res.writeHead(range !== undefined ? 206 : 200, headers)
  await sendRange(deps.objects, fetched.manifest, start, length, r.res, r.signal, n => { stats.bytesOut += n })
  r.res.end()
}
