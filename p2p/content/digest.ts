// Digests as the OCI specs write them (`sha256:<64 hex>`), their bytes, and
// the CID under which a blob is announced in the DHT (CIDv1, raw codec,
// sha256 multihash of the blob itself, so any node derives the same key).
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { InvalidDigestError } from './errors.js'

const DIGEST_RE = /^sha256:([a-f0-9]{64})$/
const RAW_CODEC = 0x55
const SHA256_CODE = 0x12

export function isDigest (s: string): boolean {
  return DIGEST_RE.test(s)
}

/** The hex part of a `sha256:` digest; throws InvalidDigestError for anything else. */
export function digestHex (digest: string): string {
  const m = DIGEST_RE.exec(digest)
  if (m === null) throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 80))}: expected sha256:<64 lowercase hex>`)
  return m[1] as string
}

export function sha256Hex (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

export function sha256Digest (data: Uint8Array): string {
  return `sha256:${sha256Hex(data)}`
}

export function sha256Bytes (data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest())
}

/** The content-routing key of a blob. */
export function digestToCid (digest: string): CID {
  const bytes = Buffer.from(digestHex(digest), 'hex')
  return CID.createV1(RAW_CODEC, Digest.create(SHA256_CODE, bytes))
}

export function cidToDigest (cid: CID): string {
  if (cid.multihash.code !== SHA256_CODE) throw new InvalidDigestError(`CID ${cid.toString()} is not a sha256 multihash`)
  return `sha256:${Buffer.from(cid.multihash.digest).toString('hex')}`
}
