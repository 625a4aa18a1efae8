// Bucket-level operations: ListBuckets, CreateBucket, HeadBucket,
// DeleteBucket, GetBucketLocation, ListObjects (v1 and v2),
// ListMultipartUploads and DeleteObjects. Reads pass a Raft barrier first,
// so what any agent committed is seen here.
import { reasonError, s3err } from './errors.js'
import { quoteEtag, readSmallBody, sendEmpty, sendXml, isoDate } from './http.js'
import { decodeToken, encodeToken, listPage, parseMaxKeys, urlEncodeKey, type ListQuery } from './list.js'
import type { S3Request } from './http.js'
import type { S3Deps } from './deps.js'
import type { S3Stats } from './stats.js'
import { MAX_S3_KEY_BYTES, type S3Bucket } from './s3-state.js'
import { parseCreateBucketBody, parseDeleteBody } from './xml.js'

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/
const OWNER = { ID: 'bolt', DisplayName: 'bolt' }

export async function bucketOp (deps: S3Deps, r: S3Request, _stats: S3Stats): Promise<void> {
  const { method, query, bucket } = r
  if (bucket === '') {
    if (method !== 'GET') throw s3err.methodNotAllowed()
    r.op = 'ListBuckets'
    await deps.barrier(r.signal)
    const buckets = deps.table().listBuckets().filter(b => r.access.bucket === undefined || b.name === r.access.bucket)
    sendXml(r.res, 200, 'ListAllMyBucketsResult', { Owner: OWNER, Buckets: { Bucket: buckets.map(b => ({ Name: b.name, CreationDate: isoDate(b.created) })) } })
    return
  }
  if (!BUCKET_RE.test(bucket)) throw s3err.invalidBucketName(bucket)
  if (method === 'PUT') {
    r.op = 'CreateBucket'
    parseCreateBucketBody(await readSmallBody(r))
    const res = await deps.write({ op: 's3.bucket.create', bucket, replicas: deps.config.replicas, created: Date.now() }, r.signal)
    if (!res.ok) throw reasonError(res.reason, bucket)
    sendEmpty(r.res, 200, { location: `/${bucket}` })
    return
  }
  if (method === 'DELETE') {
    r.op = 'DeleteBucket'
    const res = await deps.write({ op: 's3.bucket.delete', bucket }, r.signal)
    if (!res.ok) throw reasonError(res.reason, bucket)
    sendEmpty(r.res, 204)
    return
  }
  if (method === 'POST' && query.has('delete')) { await deleteObjects(deps, r); return }
  if (method !== 'GET' && method !== 'HEAD') throw s3err.methodNotAllowed()
  await deps.barrier(r.signal)
  const b = deps.table().bucket(bucket)
  if (b === undefined) throw s3err.noSuchBucket(bucket)
  if (method === 'HEAD') {
    r.op = 'HeadBucket'
    sendEmpty(r.res, 200, { 'x-amz-bucket-region': deps.config.region })
    return
  }
  if (query.has('location')) {
    r.op = 'GetBucketLocation'
    // us-east-1 is S3's empty LocationConstraint.
    sendXml(r.res, 200, 'LocationConstraint', deps.config.region === 'us-east-1' ? {} : { '#text': deps.config.region })
    return
  }
  if (query.has('uploads')) { listUploads(deps, r, b); return }
  listObjects(r, b)
}

function listObjects (r: S3Request, b: S3Bucket): void {
  const q = r.query
  const v2 = q.get('list-type') === '2'
  r.op = v2 ? 'ListObjectsV2' : 'ListObjects'
  const url = q.get('encoding-type') === 'url'
  const enc = (s: string): string => url ? urlEncodeKey(s) : s
  const token = q.get('continuation-token')
  const start = v2 ? (token !== undefined ? decodeToken(token) : { after: q.get('start-after') ?? '' }) : { after: q.get('marker') ?? '' }
  const lq: ListQuery = { prefix: q.get('prefix') ?? '', delimiter: q.get('delimiter') ?? '', maxKeys: parseMaxKeys(q.get('max-keys')), ...start }
  const page = listPage(b.objects, lq)
  const contents = page.contents.map(({ key, record }) => ({
    Key: enc(key),
    LastModified: isoDate(record.modified),
    ETag: quoteEtag(record.etag),
    Size: record.size,
    StorageClass: 'STANDARD',
    ...(v2 && q.get('fetch-owner') !== 'true' ? {} : { Owner: OWNER })
  }))
  const common = page.commonPrefixes.map(p => ({ Prefix: enc(p) }))
  const body: Record<string, unknown> = {
    Name: b.name,
    Prefix: enc(lq.prefix),
    ...(lq.delimiter !== '' ? { Delimiter: enc(lq.delimiter) } : {}),
    MaxKeys: lq.maxKeys,
    ...(url ? { EncodingType: 'url' } : {}),
    IsTruncated: page.truncated
  }
  if (v2) {
    body.KeyCount = contents.length + common.length
    if (token !== undefined) body.ContinuationToken = token
    if (q.has('start-after')) body.StartAfter = enc(q.get('start-after') ?? '')
    if (page.truncated && page.last !== undefined) body.NextContinuationToken = encodeToken(page.last)
  } else {
    body.Marker = enc(q.get('marker') ?? '')
    if (page.truncated && page.last !== undefined) body.NextMarker = enc(page.last.value)
  }
  body.Contents = contents
  body.CommonPrefixes = common
  sendXml(r.res, 200, v2 ? 'ListBucketResult' : 'ListBucketResult', body)
}

function listUploads (deps: S3Deps, r: S3Request, b: S3Bucket): void {
  r.op = 'ListMultipartUploads'
  const prefix = r.query.get('prefix') ?? ''
  const max = parseMaxKeys(r.query.get('max-uploads'))
  const keyMarker = r.query.get('key-marker') ?? ''
  const all = deps.table().listUploads(b.name).filter(u => u.key.startsWith(prefix) && u.key > keyMarker)
  const page = all.slice(0, max)
  sendXml(r.res, 200, 'ListMultipartUploadsResult', {
    Bucket: b.name,
    KeyMarker: keyMarker,
    UploadIdMarker: '',
    Prefix: prefix,
    MaxUploads: max,
    IsTruncated: all.length > page.length,
    ...(all.length > page.length ? { NextKeyMarker: page.at(-1)?.key ?? '' } : {}),
    Upload: page.map(u => ({ Key: u.key, UploadId: u.uploadId, Initiator: OWNER, Owner: OWNER, StorageClass: 'STANDARD', Initiated: isoDate(u.initiated) }))
  })
}

async function deleteObjects (deps: S3Deps, r: S3Request): Promise<void> {
  r.op = 'DeleteObjects'
  const { quiet, keys } = parseDeleteBody(await readSmallBody(r))
  const deleted: Array<{ Key: string }> = []
  const errors: Array<{ Key: string, Code: string, Message: string }> = []
  for (const key of keys) {
    if (Buffer.byteLength(key) > MAX_S3_KEY_BYTES) { errors.push({ Key: key.slice(0, 64), Code: 'KeyTooLongError', Message: 'Your key is too long' }); continue }
    const res = await deps.write({ op: 's3.object.delete', bucket: r.bucket, key }, r.signal)
    if (res.ok) deleted.push({ Key: key })
    else { const e = reasonError(res.reason, r.bucket, key); errors.push({ Key: key, Code: e.code, Message: e.message }) }
  }
  sendXml(r.res, 200, 'DeleteResult', { ...(quiet ? {} : { Deleted: deleted }), Error: errors })
}
