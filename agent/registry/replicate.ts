// Placing a pushed image's blobs on other members before the push is
// acknowledged: each chosen member pulls them (from this node or anyone,
// verified piece by piece) and pins them under the image's owner. A member
// that fails is replaced by another until enough hold them or none is left.
import type { PieceExchange } from '../../p2p/content/piece-exchange.js'

export interface ReplicateResult {
  /** Members that hold every blob now. */
  held: string[]
  /** How many were wanted (capped by the members available). */
  wanted: number
  errors: Array<{ peer: string, error: string }>
}

/** `prefer` (members already pulling these blobs, see ClusterRegistry.preReplicate) are asked first, the rest in random order. */
export async function replicate (exchange: Pick<PieceExchange, 'requestReplicate'>, o: { owner: string, blobs: Array<{ digest: string, size: number }>, want: number, targets: string[], prefer?: string[], signal?: AbortSignal }): Promise<ReplicateResult> {
  const prefer = (o.prefer ?? []).filter(p => o.targets.includes(p))
  const pool = [...prefer, ...o.targets.filter(p => !prefer.includes(p)).sort(() => Math.random() - 0.5)]
  const wanted = Math.max(0, Math.min(o.want, pool.length))
  const held: string[] = []
  const errors: ReplicateResult['errors'] = []
  while (held.length < wanted && pool.length > 0) {
    const picks = pool.splice(0, wanted - held.length)
    const results = await Promise.allSettled(picks.map(async peer => {
      await exchange.requestReplicate(peer, o.owner, o.blobs, { ...(o.signal !== undefined ? { signal: o.signal } : {}) })
      return peer
    }))
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') held.push(r.value)
      else errors.push({ peer: picks[i] as string, error: (r.reason as Error).message })
    })
  }
  return { held, wanted, errors }
}
