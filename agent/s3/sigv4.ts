// AWS Signature V4 on the server side: parse the credential (the
// Authorization header, or a presigned URL's X-Amz-* query), rebuild the
// canonical request from what arrived, and recompute the signature with the
// key's secret — the signing key's derivation and the canonical query are
// @smithy/signature-v4's, the code every AWS SDK signs with. A request whose
// signature differs, whose date is off by more than 15 minutes, or whose
// presigned URL has expired is refused before a byte of its body is read.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { getCanonicalQuery, getSigningKey } from '@smithy/signature-v4'
import { Hash } from '@smithy/hash-node'
import type { HttpRequest } from '@smithy/types'
import { S3Error, s3err } from './errors.js'

export const ALGORITHM = 'AWS4-HMAC-SHA256'
/** Requests dated further than this from our clock are refused (S3's own bound). */
export const MAX_SKEW_MS = 15 * 60_000
/** Longest presigned URL validity S3 accepts: 7 days. */
export const MAX_PRESIGN_SECONDS = 604_800
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD'
export const STREAMING_SIGNED = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'
export const STREAMING_SIGNED_TRAILER = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER'
export const STREAMING_UNSIGNED_TRAILER = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER'
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

/** A request's credential, as parsed (nothing checked against a key yet). */
export interface SigV4Credential {
  accessKey: string
  /** YYYYMMDD of the scope. */
  shortDate: string
  region: string
  service: string
  /** x-amz-date: YYYYMMDDTHHMMSSZ. */
  amzDate: string
  signedHeaders: string[]
  signature: string
  /** The payload hash the signature covers (x-amz-content-sha256, or UNSIGNED-PAYLOAD when presigned). */
  payloadHash: string
  /** Presigned URL: seconds it is valid from amzDate. */
  expires?: number
}

const CRED_RE = /^([A-Za-z0-9]{1,64})\/(\d{8})\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,16})\/aws4_request$/
const DATE_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/
const HEADERS_RE = /^[a-z0-9-]+(;[a-z0-9-]+)*$/

function parseScope (cred: string): Pick<SigV4Credential, 'accessKey' | 'shortDate' | 'region' | 'service'> {
  const m = CRED_RE.exec(cred)
  if (m === null) throw s3err.authorizationMalformed('the Credential is not ACCESSKEY/YYYYMMDD/REGION/SERVICE/aws4_request')
  return { accessKey: m[1]!, shortDate: m[2]!, region: m[3]!, service: m[4]! }
}

function parseSignedHeaders (v: string): string[] {
  if (v.length > 2048 || !HEADERS_RE.test(v)) throw s3err.authorizationMalformed('SignedHeaders is not a ;-separated list of lower-case header names')
  const list = v.split(';')
  if (!list.includes('host')) throw s3err.authorizationMalformed('SignedHeaders must include host')
  return list
}

/** `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`. Throws S3Error. */
export function parseAuthorizationHeader (value: string, headers: IncomingHttpHeaders): SigV4Credential {
  if (value.length > 4096) throw s3err.authorizationMalformed('the Authorization header is too long')
  if (!value.startsWith(ALGORITHM + ' ')) {
    if (value.startsWith('AWS ')) throw s3err.invalidRequest('Signature V2 is not supported: sign requests with AWS Signature V4')
    throw s3err.authorizationMalformed(`the Authorization header is not ${ALGORITHM}`)
  }
  const fields = new Map<string, string>()
  for (const part of value.slice(ALGORITHM.length + 1).split(',')) {
    const p = part.trim()
    const eq = p.indexOf('=')
    if (eq <= 0) throw s3err.authorizationMalformed('the Authorization header has a field without =')
    fields.set(p.slice(0, eq), p.slice(eq + 1))
  }
  const cred = fields.get('Credential')
  const sh = fields.get('SignedHeaders')
  const sig = fields.get('Signature')
  if (cred === undefined || sh === undefined || sig === undefined) throw s3err.authorizationMalformed('the Authorization header needs Credential, SignedHeaders and Signature')
  if (!/^[0-9a-f]{64}$/.test(sig)) throw s3err.authorizationMalformed('the Signature is not 64 hex digits')
  const amzDate = headerValue(headers, 'x-amz-date')
  if (amzDate === undefined || !DATE_RE.test(amzDate)) throw s3err.accessDenied('AWS authentication requires a valid x-amz-date header')
  const payloadHash = headerValue(headers, 'x-amz-content-sha256')
  if (payloadHash === undefined) throw s3err.invalidRequest('Missing required header for this request: x-amz-content-sha256')
  return { ...parseScope(cred), amzDate, signedHeaders: parseSignedHeaders(sh), signature: sig, payloadHash }
}

/** A presigned URL's X-Amz-* parameters; undefined when the query has no X-Amz-Signature. Throws S3Error when malformed. */
export function parsePresignedQuery (query: Map<string, string>): SigV4Credential | undefined {
  const sig = query.get('X-Amz-Signature')
  if (sig === undefined) return undefined
  if (query.get('X-Amz-Algorithm') !== ALGORITHM) throw s3err.authorizationMalformed(`X-Amz-Algorithm must be ${ALGORITHM}`)
  if (!/^[0-9a-f]{64}$/.test(sig)) throw s3err.authorizationMalformed('X-Amz-Signature is not 64 hex digits')
  const amzDate = query.get('X-Amz-Date') ?? ''
  if (!DATE_RE.test(amzDate)) throw s3err.authorizationMalformed('X-Amz-Date is not YYYYMMDDTHHMMSSZ')
  const expiresRaw = query.get('X-Amz-Expires') ?? ''
  if (!/^\d{1,6}$/.test(expiresRaw) || Number(expiresRaw) > MAX_PRESIGN_SECONDS) throw s3err.authorizationMalformed(`X-Amz-Expires must be a number of seconds up to ${MAX_PRESIGN_SECONDS}`)
  return { ...parseScope(query.get('X-Amz-Credential') ?? ''), amzDate, signedHeaders: parseSignedHeaders(query.get('X-Amz-SignedHeaders') ?? ''), signature: sig, payloadHash: UNSIGNED_PAYLOAD, expires: Number(expiresRaw) }
}

/** x-amz-date as epoch ms. */
export function amzDateMs (amzDate: string): number {
  const m = DATE_RE.exec(amzDate)
  if (m === null) return NaN
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]))
}

/** Refuses a request dated too far from `now`, or a presigned URL past its expiry. */
export function checkTime (c: SigV4Credential, now: number): void {
  const at = amzDateMs(c.amzDate)
  if (!Number.isFinite(at) || c.amzDate.slice(0, 8) !== c.shortDate) throw s3err.authorizationMalformed('the date of the credential scope and x-amz-date differ')
  if (c.expires !== undefined) {
    if (at - now > MAX_SKEW_MS) throw s3err.skewed()
    if (now > at + c.expires * 1000) throw s3err.expired()
    return
  }
  if (Math.abs(now - at) > MAX_SKEW_MS) throw s3err.skewed()
}

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - . _ ~ as %XX (upper case). */
export function uriEncode (s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** The canonical URI of an S3 request: each segment of the raw path decoded, then encoded once. */
export function canonicalPath (rawPath: string): string {
  return rawPath.split('/').map(seg => uriEncode(safeDecode(seg))).join('/')
}

export function safeDecode (s: string): string {
  try { return decodeURIComponent(s) } catch { throw s3err.invalidRequest('the request URI has a malformed %-escape') }
}

/** The raw query string as decoded pairs ('+' stays '+': SigV4 clients encode a space as %20). Throws S3Error on bad escapes. */
export function parseRawQuery (raw: string): Map<string, string> {
  const out = new Map<string, string>()
  if (raw === '') return out
  for (const pair of raw.split('&')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    const k = safeDecode(eq < 0 ? pair : pair.slice(0, eq))
    const v = eq < 0 ? '' : safeDecode(pair.slice(eq + 1))
    if (out.has(k)) throw s3err.invalidArgument(`the query names ${k.slice(0, 64)} twice`)
    out.set(k, v)
  }
  return out
}

function headerValue (headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(',') : v
}

/**
 * The canonical request of SigV4 (method, URI, query, signed headers and
 * payload hash). `pathAsSent`: the URI exactly as the client sent it (what
 * SDKs sign, having encoded it themselves); otherwise re-encoded strictly.
 */
export function canonicalRequest (method: string, rawPath: string, query: Map<string, string>, headers: IncomingHttpHeaders, c: SigV4Credential, pathAsSent = false): string {
  const canonHeaders = c.signedHeaders.map(h => {
    const v = headerValue(headers, h)
    if (v === undefined) throw s3err.accessDenied(`the signed header ${h} is missing from the request`)
    return `${h}:${v.trim().replace(/\s+/g, ' ')}\n`
  }).join('')
  const q = getCanonicalQuery({ query: Object.fromEntries(query) } as unknown as HttpRequest)
  return [method, pathAsSent ? rawPath : canonicalPath(rawPath), q, canonHeaders, c.signedHeaders.join(';'), c.payloadHash].join('\n')
}

export function scopeOf (c: Pick<SigV4Credential, 'shortDate' | 'region' | 'service'>): string {
  return `${c.shortDate}/${c.region}/${c.service}/aws4_request`
}

export function sha256Hex (data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** The signing key of `secret` for the credential's scope (derived by smithy, cached there). */
export async function signingKey (c: SigV4Credential, secret: string): Promise<Uint8Array> {
  return await getSigningKey(Hash.bind(null, 'sha256'), { accessKeyId: c.accessKey, secretAccessKey: secret }, c.shortDate, c.region, c.service)
}

export function hmacHex (key: Uint8Array, data: string): string {
  return createHmac('sha256', key).update(data).digest('hex')
}

export function sameSignature (a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))
}

/** Checks the request's signature; returns the signing key (aws-chunked bodies sign each chunk with it). Throws SignatureDoesNotMatch. */
export async function verifySignature (method: string, rawPath: string, query: Map<string, string>, headers: IncomingHttpHeaders, c: SigV4Credential, secret: string): Promise<Uint8Array> {
  if (c.service !== 's3') throw s3err.authorizationMalformed(`the credential scope's service is ${c.service}, expected s3`)
  const key = await signingKey(c, secret)
  // Clients encode the path themselves, not all alike (e.g. '!' raw or as %21): the path as sent first, then strictly encoded.
  for (const asSent of rawPath === canonicalPath(rawPath) ? [true] : [true, false]) {
    const sts = [ALGORITHM, c.amzDate, scopeOf(c), sha256Hex(canonicalRequest(method, rawPath, query, headers, c, asSent))].join('\n')
    if (sameSignature(hmacHex(key, sts), c.signature)) return key
  }
  throw s3err.signatureMismatch()
}

export { S3Error }
