// Messages of the admission protocol `/bolt/admit/1`: a mutual
// challenge–response bound to both peer ids, so the secret never crosses the
// wire and a proof made for one connection is worthless on another. The
// cluster key is versioned: `evict` replaces it, and a member one version
// behind is handed the new key (with the evicted ids) after proving the old.
import { createHmac } from 'node:crypto'
import { z } from 'zod'
import { decodeFrame, encodeFrame } from '../wire.js'

export const ADMIT_PROTOCOL = '/bolt/admit/1'
/** The largest admission frame: the welcome with a member list of ~200 peers fits. */
export const MAX_ADMIT_FRAME = 64 * 1024

const hex = (bytes: number): z.ZodString => z.string().length(bytes * 2).regex(/^[0-9a-f]+$/)
const Nonce = hex(32)
const Mac = hex(32)
const Version = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
/** Cluster key version; absent from agents before key rotation: 1. */
const KeyVersion = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).default(1)
/** Evicted peer ids handed over with a new cluster key (the most recent ones). */
export const MAX_EVICTED_HANDOVER = 256
/**
 * A newer cluster key, handed by the side that has it to one a version
 * behind, once that side proved the older key; `evicted` lists the peers
 * that must no longer be admitted, even with the older key.
 */
export const Rekey = z.object({
  version: z.number().int().min(2).max(Number.MAX_SAFE_INTEGER),
  key: hex(32),
  evicted: z.array(z.string().min(1).max(128)).max(MAX_EVICTED_HANDOVER)
})
export type Rekey = z.infer<typeof Rekey>

export const Hello = z.object({
  t: z.literal('hello'),
  mode: z.enum(['join', 'member']),
  clusterId: hex(8),
  nonce: Nonce,
  secretVersion: Version,
  keyVersion: KeyVersion
})
export const Challenge = z.object({
  t: z.literal('challenge'),
  nonce: Nonce,
  proof: Mac,
  secretVersion: Version,
  /** The key version the proofs of this exchange use (member mode): the older side's. */
  keyVersion: KeyVersion
})
export const Proof = z.object({
  t: z.literal('proof'),
  proof: Mac,
  /** A member whose join secret is newer than the listener's hands it over (rotation). */
  joinSecret: hex(32).optional(),
  secretVersion: Version,
  /** A dialer whose cluster key is newer than the listener's hands it over. */
  rekey: Rekey.optional()
})
export const Welcome = z.object({
  t: z.literal('welcome'),
  clusterKey: hex(32).optional(),
  joinSecret: hex(32).optional(),
  secretVersion: Version,
  /** With clusterKey (join): its version. */
  keyVersion: KeyVersion,
  /** A listener whose cluster key is newer than the dialer's hands it over. */
  rekey: Rekey.optional(),
  members: z.array(z.object({ id: z.string().max(128), addrs: z.array(z.string().max(256)).max(16) })).max(256)
})
export const Reject = z.object({
  t: z.literal('reject'),
  reason: z.enum(['cluster', 'token', 'revoked', 'rate', 'protocol', 'stale'])
})
export const AdmitMessage = z.discriminatedUnion('t', [Hello, Challenge, Proof, Welcome, Reject])
export type AdmitMessage = z.infer<typeof AdmitMessage>

export function encodeAdmit (m: AdmitMessage): Uint8Array {
  return encodeFrame(AdmitMessage, m, MAX_ADMIT_FRAME)
}

export function decodeAdmit (bytes: Uint8Array): AdmitMessage {
  return decodeFrame(AdmitMessage, bytes, MAX_ADMIT_FRAME)
}

/**
 * The MAC each side sends. `role` separates the two directions so a proof
 * can't be reflected back; both peer ids and both nonces bind it to this
 * exchange on this connection.
 */
export function admissionMac (keyHex: string, role: 'listener' | 'dialer', clusterId: string, self: string, other: string, dialerNonce: string, listenerNonce: string): string {
  return createHmac('sha256', Buffer.from(keyHex, 'hex'))
    .update(['bolt-admit-v1', role, clusterId, self, other, dialerNonce, listenerNonce].join('\n'))
    .digest('hex')
}
