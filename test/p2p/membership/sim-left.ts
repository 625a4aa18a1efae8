// Stand-in signatures of `left` news for simulated cores, whose ids are not
// libp2p peer ids: deterministic per (id, incarnation), so a forger without
// this function's secret-free recipe is what the tests model by sending none.
import { createHash } from 'node:crypto'
import type { LeftVerifier } from '../../../p2p/membership/left-proof.js'

export function simLeftSig (id: string, inc: number): string {
  return createHash('sha512').update(`sim-left\n${id}\n${inc}`).digest('hex')
}

export const simVerifyLeft: LeftVerifier = (id, inc, sig) => sig === simLeftSig(id, inc)

/** The signer a simulated core passes to leave(). */
export const simSigner = (id: string) => (inc: number): string => simLeftSig(id, inc)
