// Who may say that a member left: only the member itself. Its `left` news is
// signed with its libp2p key (Ed25519, whose public key is inside the peer id)
// and re-gossiped with the signature, so every member can check it no matter
// who relays it. Unsigned or forged `left` news is never taken as a departure.
import { createPublicKey, verify as verifySignature, type KeyObject } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'

/** Hex of an Ed25519 signature (64 bytes). */
export const LEFT_SIG_HEX_CHARS = 128
/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 raw key bytes follow. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
/** Parsed public keys of recent signers, so relayed copies are cheap to check. */
const MAX_CACHED_KEYS = 256
const keys = new Map<string, KeyObject | null>()

/** Checks a member's own `left` news; what the SWIM core is given. */
export type LeftVerifier = (id: string, inc: number, sig: string | undefined) => boolean

/** Anything that signs bytes with the node's key (libp2p's PrivateKey does). */
export interface LeftSigner { sign: (data: Uint8Array) => Uint8Array | Promise<Uint8Array> }

/** The bytes a member signs when it leaves at incarnation `inc`. */
export function leftPayload (id: string, inc: number): Uint8Array {
  return Buffer.from(`bolt-swim-left-v1\n${id}\n${inc}`)
}

export async function signLeft (signer: LeftSigner, id: string, inc: number): Promise<string> {
  return Buffer.from(await signer.sign(leftPayload(id, inc))).toString('hex')
}

function publicKeyOf (id: string): KeyObject | null {
  const cached = keys.get(id)
  if (cached !== undefined) return cached
  let key: KeyObject | null = null
  try {
    const pk = peerIdFromString(id).publicKey
    if (pk?.type === 'Ed25519') key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, pk.raw]), format: 'der', type: 'spki' })
  } catch {
    key = null // not a peer id with an inline Ed25519 key: nothing it says about leaving can be checked
  }
  if (keys.size >= MAX_CACHED_KEYS) keys.clear()
  keys.set(id, key)
  return key
}

/** True when `sig` is `id`'s signature of its own departure at `inc`. */
export const verifyLeft: LeftVerifier = (id, inc, sig) => {
  if (sig === undefined || sig.length !== LEFT_SIG_HEX_CHARS || !/^[0-9a-f]+$/.test(sig)) return false
  const key = publicKeyOf(id)
  if (key === null) return false
  try {
    return verifySignature(null, leftPayload(id, inc), key, Buffer.from(sig, 'hex'))
  } catch {
    return false // a malformed signature is a forgery like any other
  }
}
