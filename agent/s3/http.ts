// Small HTTP helpers of the S3 operations: XML answers, small XML request
// bodies read whole (bounded) and checked against their signed SHA-256 and
// Content-MD5, and the common object headers.
import { createHash } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { s3err } from './errors.js'
import type { IncomingMessage } from 'node:http'
import type { S3Key } from './s3-state.js'
import type { SigV4Credential } from './sigv4.js'
import type { S3ObjectRecord } from './s3-state.js'
import { UNSIGNED_PAYLOAD } from './sigv4.js'
import { MAX_XML_BODY_BYTES, xmlDocument } from './xml.js'

/** One authenticated request as the operations see it. */
export interface S3Request {
  req: IncomingMessage
  res: ServerResponse
  method: string
  bucket: string
  key: string
  query: Map<string, string>
  cred: SigV4Credential
  /** The access key's record: what it may do. */
  access: S3Key
  signingKey: Uint8Array
  signal: AbortSignal
  /** Names the operation for metrics and logs (set by the router). */
  op: string
}

export function sendXml (res: ServerResponse, status: number, root: string, body: Record<string, unknown>): void {
  const bytes = Buffer.from(xmlDocument(root, body))
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': bytes.length })
  res.end(bytes)
}

export function sendEmpty (res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'content-length': '0' })
  res.end()
}

/** A small request body (XML), whole; MalformedXML when larger than the bound, signature checks as for objects. */
export async function readSmallBody (r: S3Request): Promise<string> {
  if (r.cred.payloadHash.startsWith('STREAMING-')) throw s3err.notImplemented('an aws-chunked body for this operation')
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of r.req) {
    n += (c as Buffer).length
    if (n > MAX_XML_BODY_BYTES) throw s3err.malformedXml('the XML body is too large')
    chunks.push(c as Buffer)
  }
  const body = Buffer.concat(chunks)
  if (r.cred.payloadHash !== UNSIGNED_PAYLOAD && createHash('sha256').update(body).digest('hex') !== r.cred.payloadHash) throw s3err.xAmzContentSha256Mismatch()
  const md5 = r.req.headers['content-md5']
  if (typeof md5 === 'string' && createHash('md5').update(body).digest('base64') !== md5) throw s3err.badDigest()
  return body.toString('utf8')
}

export function quoteEtag (etag: string): string { return `"${etag}"` }

/** The headers of GET/HEAD object: ETag, length, type, dates, user metadata. */
export function objectHeaders (rec: S3ObjectRecord, checksums: boolean): Record<string, string> {
  const h: Record<string, string> = {
    etag: quoteEtag(rec.etag),
    'last-modified': new Date(rec.modified).toUTCString(),
    'content-type': rec.contentType ?? 'application/octet-stream',
    'accept-ranges': 'bytes'
  }
  for (const [k, v] of Object.entries(rec.meta ?? {})) h[`x-amz-meta-${k}`] = v
  if (checksums) for (const [alg, v] of Object.entries(rec.checksums ?? {})) h[`x-amz-checksum-${alg}`] = v
  return h
}

export function isoDate (ms: number): string { return new Date(ms).toISOString().replace(/\.\d{3}Z$/, '.000Z') }
