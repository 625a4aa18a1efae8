// Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
// AbortMultipartUpload and ListParts. Each part is stored as an object of its
// own (chunked, replicated) and recorded in the Raft state, so any agent may
// complete the upload; completing writes one manifest naming the parts'
// chunks in order — no byte is copied — and commits the object's record and
// the upload's end in one Raft command.
import { createHash, randomBytes } from 'node:crypto'
import type { S3Deps } from './deps.js'
import { reasonError, s3err } from './errors.js'
import { quoteEtag, readSmallBody, sendEmpty, sendXml, isoDate } from './http.js'
import { copySource, guard, needBucket, parseRange, stagerOf, storeBody, userMeta } from './object-ops.js'
import { readRange } from './object-read.js'
import type { ReceivedBody } from './body.js'
import type { S3Request } from './http.js'
import { MAX_PARTS, type S3ObjectRecord, type S3Upload } from './s3-state.js'
import type { S3Stats } from './stats.js'
import { parseCompleteBody } from './xml.js'

/** Every part but the last must be at least this large (S3's rule). */
export const MIN_PART_BYTES = 5 * 1024 * 1024

async function needUpload (deps: S3Deps, r: S3Request): Promise<S3Upload> {
  const id = r.query.get('uploadId') ?? ''
  let u = deps.table().upload(id)
  if (u === undefined) { await deps.barrier(r.signal); u = deps.table().upload(id) }
  if (u === undefined || u.bucket !== r.bucket || u.key !== r.key) throw s3err.noSuchUpload()
  return u
}

export async function multipartOp (deps: S3Deps, r: S3Request, stats: S3Stats): Promise<void> {
  if (r.method === 'POST' && r.query.has('uploads')) {
    r.op = 'CreateMultipartUpload'
    await needBucket(deps, r)
    const uploadId = randomBytes(16).toString('hex')
    const type = r.req.headers['content-type']
    const meta = userMeta(r)
    const res = await deps.write({ op: 's3.upload.create', bucket: r.bucket, key: r.key, uploadId, initiated: Date.now(), ...(typeof type === 'string' && type.length <= 256 ? { contentType: type } : {}), ...(meta !== undefined ? { meta } : {}) }, r.signal)
    if (!res.ok) throw reasonError(res.reason, r.bucket, r.key)
    sendXml(r.res, 200, 'InitiateMultipartUploadResult', { Bucket: r.bucket, Key: r.key, UploadId: uploadId })
    return
  }
  if (r.method === 'PUT') { await uploadPart(deps, r, stats); return }
  if (r.method === 'POST') { await complete(deps, r); return }
  if (r.method === 'DELETE') {
    r.op = 'AbortMultipartUpload'
    await needUpload(deps, r)
    const res = await deps.write({ op: 's3.upload.abort', uploadId: r.query.get('uploadId') ?? '' }, r.signal)
    if (!res.ok) throw reasonError(res.reason, r.bucket, r.key)
    sendEmpty(r.res, 204)
    return
  }
  if (r.method === 'GET') { await listParts(deps, r); return }
  throw s3err.methodNotAllowed()
}

async function uploadPart (deps: S3Deps, r: S3Request, stats: S3Stats): Promise<void> {
  r.op = 'UploadPart'
  const raw = r.query.get('partNumber') ?? ''
  if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_PARTS) throw s3err.invalidArgument(`Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`)
  const u = await needUpload(deps, r)
  const bucket = await needBucket(deps, r)
  const copied = r.req.headers['x-amz-copy-source'] !== undefined ? async () => await copyRange(deps, r) : undefined
  if (copied !== undefined) r.op = 'UploadPartCopy'
  const got = await storeBody(deps, r, bucket.replicas, stats, copied)
  const part = { n: Number(raw), id: got.id, size: got.size, etag: got.md5, modified: Date.now(), holders: got.holders.slice(0, 16) }
  const res = await guard(deps, part.id, async () => await deps.write({ op: 's3.upload.part', uploadId: u.uploadId, part }, r.signal))
  if (!res.ok) throw reasonError(res.reason, r.bucket, r.key)
  if (copied !== undefined) { sendXml(r.res, 200, 'CopyPartResult', { LastModified: isoDate(part.modified), ETag: quoteEtag(got.md5) }); return }
  const headers: Record<string, string> = { etag: quoteEtag(got.md5) }
  for (const [alg, v] of Object.entries(got.checksums)) headers[`x-amz-checksum-${alg}`] = v
  sendEmpty(r.res, 200, headers)
}

/** UploadPartCopy: the source's byte range (x-amz-copy-source-range) staged, as if uploaded. */
async function copyRange (deps: S3Deps, r: S3Request): Promise<ReceivedBody> {
  const { bucket, key } = copySource(String(r.req.headers['x-amz-copy-source']))
  await deps.barrier(r.signal)
  const src = deps.table().object(bucket, key)
  if (src === undefined) throw deps.table().bucket(bucket) === undefined ? s3err.noSuchBucket(bucket) : s3err.noSuchKey(key)
  const rangeHeader = r.req.headers['x-amz-copy-source-range']
  const range = typeof rangeHeader === 'string' ? parseRange(rangeHeader, src.size) : undefined
  if (typeof rangeHeader === 'string' && range === undefined) throw s3err.invalidArgument('x-amz-copy-source-range must be bytes=FIRST-LAST')
  const [start, end] = range ?? [0, src.size - 1]
  if (end - start + 1 > deps.config.max_put_bytes) throw s3err.entityTooLarge(deps.config.max_put_bytes)
  const fetched = await deps.fetchObject(src.id, src.holders, r.signal)
  const md5 = createHash('md5')
  let size = 0
  async function * bytes (): AsyncIterable<Uint8Array> {
    for await (const c of readRange(deps.objects, fetched.manifest, start, src!.size === 0 ? 0 : end - start + 1)) {
      md5.update(c)
      size += c.length
      yield c
    }
  }
  const staged = await stagerOf(deps).stage(bytes(), r.signal)
  return { staged, size, md5: md5.digest('hex'), checksums: {} }
}

async function complete (deps: S3Deps, r: S3Request): Promise<void> {
  r.op = 'CompleteMultipartUpload'
  const u = await needUpload(deps, r)
  const asked = parseCompleteBody(await readSmallBody(r))
  const bucket = await needBucket(deps, r)
  for (let i = 1; i < asked.length; i++) if (asked[i]!.n <= asked[i - 1]!.n) throw s3err.invalidPartOrder()
  const parts = asked.map(({ n, etag }) => {
    const p = u.parts.get(n)
    if (p === undefined) throw s3err.invalidPart(`part ${n} was never uploaded (or its upload failed)`)
    if (p.etag !== etag) throw s3err.invalidPart(`part ${n}'s ETag is "${p.etag}", not "${etag.slice(0, 40)}"`)
    return p
  })
  parts.forEach((p, i) => { if (i < parts.length - 1 && p.size < MIN_PART_BYTES) throw s3err.entityTooSmall(p.n) })
  const chunks: Array<{ digest: string, size: number }> = []
  for (const p of parts) {
    const f = await deps.fetchObject(p.id, p.holders, r.signal)
    chunks.push(...f.manifest.chunks)
  }
  const md5s = createHash('md5')
  for (const p of parts) md5s.update(Buffer.from(p.etag, 'hex'))
  const etag = `${md5s.digest('hex')}-${parts.length}`
  const put = await deps.objects.putChunks(chunks, { replicas: bucket.replicas, name: '', signal: r.signal })
  const record: S3ObjectRecord = {
    id: put.id, size: put.size, etag, modified: Date.now(), holders: [deps.self, ...put.replicas].slice(0, 16),
    ...(u.contentType !== undefined ? { contentType: u.contentType } : {}),
    ...(u.meta !== undefined ? { meta: u.meta } : {})
  }
  const res = await guard(deps, record.id, async () => await deps.write({ op: 's3.upload.complete', uploadId: u.uploadId, record }, r.signal))
  if (!res.ok) throw reasonError(res.reason, r.bucket, r.key)
  sendXml(r.res, 200, 'CompleteMultipartUploadResult', { Location: `/${r.bucket}/${r.key}`, Bucket: r.bucket, Key: r.key, ETag: quoteEtag(etag) })
}

async function listParts (deps: S3Deps, r: S3Request): Promise<void> {
  r.op = 'ListParts'
  const u = await needUpload(deps, r)
  const marker = Number(r.query.get('part-number-marker') ?? '0')
  const max = Math.min(Number(r.query.get('max-parts') ?? '1000') || 1000, 1000)
  const all = [...u.parts.values()].filter(p => p.n > marker).sort((a, b) => a.n - b.n)
  const page = all.slice(0, max)
  sendXml(r.res, 200, 'ListPartsResult', {
    Bucket: r.bucket,
    Key: r.key,
    UploadId: u.uploadId,
    PartNumberMarker: marker,
    ...(all.length > page.length ? { NextPartNumberMarker: page.at(-1)?.n ?? 0 } : {}),
    MaxParts: max,
    IsTruncated: all.length > page.length,
    StorageClass: 'STANDARD',
    Part: page.map(p => ({ PartNumber: p.n, LastModified: isoDate(p.modified), ETag: quoteEtag(p.etag), Size: p.size }))
  })
}
