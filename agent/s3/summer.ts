// One running checksum of a body, by S3's algorithm name: crc32 and crc32c
// as 4 big-endian bytes, anything else a node:crypto hash (md5, sha1,
// sha256). The body hasher and its worker thread share it.
import { createHash, type Hash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { Crc32c } from '@aws-crypto/crc32c'

export interface Summer { update: (b: Uint8Array) => void, digest: () => Buffer }

export function summer (alg: string): Summer {
  if (alg === 'crc32') {
    let v = 0
    return { update: b => { v = crc32(b, v) }, digest: () => u32(v) }
  }
  if (alg === 'crc32c') {
    const c = new Crc32c()
    return { update: b => { c.update(b) }, digest: () => u32(c.digest()) }
  }
  const h: Hash = createHash(alg)
  return { update: b => { h.update(b) }, digest: () => h.digest() }
}

function u32 (v: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(v >>> 0)
  return b
}
