// Messages of the admission protocol `/bolt/admit/1`: a mutual
// challenge–response bound to both peer ids, so the secret never crosses the
// wire and a proof made for one connection is worthless on another.
import { createHmac } from 'node:crypto'
import { z } from 'zod'
import { decodeFrame, encodeFrame } from '../wire.js'

export const ADMIT_PROTOCOL = '/bolt/admit/1'
/** The largest admission frame: the welcome with a member list of ~200 peers fits. */
export const MAX_ADMIT_FRAME = 64 * 1024

const hex = (bytes: number): z.ZodString => z.string().length(bytes * 2).regex(/^[0-9a-f]+$/)
const Nonce = hex(32)
const Mac = hex(32)

export const Hello = z.object({
  t: z.literal('hello'),
  mode: z.enum(['join', 'member']),
  clusterId: hex(8),
  nonce: Nonce,
  secretVersion: z.number().int().nonnegative()
})
export const Challenge = z.object({
  t: z.literal('challenge'),
  nonce: Nonce,
  proof: Mac,
  secretVersion: z.number().int().nonnegative()
})
export const Proof = z.object({
  t: z.literal('proof'),
  proof: Mac,
  /** A member whose join secret is newer than the listener's hands it over (rotation). */
  joinSecret: hex(32).optional(),
  secretVersion: z.number().int().nonnegative()
})
export const Welcome = z.object({
  t: z.literal('welcome'),
  clusterKey: hex(32).optional(),
  joinSecret: hex(32).optional(),
  secretVersion: z.number().int().nonnegative(),
  members: z.array(z.object({ id: z.string().max(128), addrs: z.array(z.string().max(256)).max(16) })).max(256)
})
export const Reject = z.object({
  t: z.literal('reject'),
  reason: z.enum(['cluster', 'token', 'revoked', 'rate', 'protocol'])
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
