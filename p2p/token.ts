// The join token, modelled on k3s's secure token (`K10<ca-hash>::<secret>`):
// it names the cluster, carries the join secret, and pins a fingerprint of the
// cluster key, so a joiner can tell the real cluster from an impostor that
// only stole the secret. Format: `bolt1_<clusterId>_<fingerprint>_<secret>`,
// all lowercase hex.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

export const TOKEN_PREFIX = 'bolt1'
const CLUSTER_ID_BYTES = 8
const FINGERPRINT_BYTES = 12
const SECRET_BYTES = 32

export interface JoinToken {
  clusterId: string
  fingerprint: string
  secret: string
}

export class InvalidTokenError extends Error {
  override name = 'InvalidTokenError'
}

const HEX = /^[0-9a-f]+$/

export function parseToken (text: string): JoinToken {
  const parts = text.trim().split('_')
  if (parts.length !== 4 || parts[0] !== TOKEN_PREFIX) {
    throw new InvalidTokenError(`malformed token: expected ${TOKEN_PREFIX}_<cluster>_<fingerprint>_<secret> (copy it from \`bolt-agent token\` on a member)`)
  }
  const [, clusterId, fingerprint, secret] = parts as [string, string, string, string]
  const check = (v: string, bytes: number, what: string): void => {
    if (v.length !== bytes * 2 || !HEX.test(v)) throw new InvalidTokenError(`malformed token: the ${what} part should be ${bytes * 2} hex characters`)
  }
  check(clusterId, CLUSTER_ID_BYTES, 'cluster id')
  check(fingerprint, FINGERPRINT_BYTES, 'fingerprint')
  check(secret, SECRET_BYTES, 'secret')
  return { clusterId, fingerprint, secret }
}

export function formatToken (t: JoinToken): string {
  return `${TOKEN_PREFIX}_${t.clusterId}_${t.fingerprint}_${t.secret}`
}

/** Fingerprint of the cluster key: what a joiner checks the cluster against. */
export function clusterKeyFingerprint (clusterKey: Uint8Array): string {
  return createHash('sha256').update('bolt-cluster-key\0').update(clusterKey).digest().subarray(0, FINGERPRINT_BYTES).toString('hex')
}

export function newClusterId (): string { return randomBytes(CLUSTER_ID_BYTES).toString('hex') }
export function newSecret (): string { return randomBytes(SECRET_BYTES).toString('hex') }
export function newClusterKey (): string { return randomBytes(32).toString('hex') }

export function equalHex (a: string, b: string): boolean {
  if (a.length !== b.length) return false
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'))
}
