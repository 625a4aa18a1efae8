// Small parts of the piece picker (piece-picker.ts): its invariant error,
// the per-node order it breaks ties with, and the budget of one tick.

/** The picker's own state broke a rule it keeps: a bug, never bad input from a peer. */
export class PickerInvariantError extends Error {
  override name = 'PickerInvariantError'
}

/**
 * A per-node order of the pieces for ties (a shuffle seeded by the node's
 * id), so nodes starting together do not all chase the same piece.
 */
export function tieOrder (self: string, count: number): number[] {
  const order = Array.from({ length: count }, (_, i) => i)
  let seed = hashString(self)
  for (let i = order.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    const j = seed % (i + 1)
    const tmp = order[i] as number
    order[i] = order[j] as number
    order[j] = tmp
  }
  return order
}

function hashString (s: string): number {
  let h = 2166136261
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0
  return h
}

/** What one tick may still start: peer requests, registry requests, and requests to each peer (node-wide caps kept by the caller). */
export class TickBudget {
  private readonly room = new Map<string, number>()
  constructor (private requests: number, private registry: number, private readonly peerRoom?: (peer: string) => number) {}

  peerMay (peer: string): boolean {
    if (this.requests <= 0) return false
    let r = this.room.get(peer)
    if (r === undefined) { r = this.peerRoom?.(peer) ?? Number.POSITIVE_INFINITY; this.room.set(peer, r) }
    return r > 0
  }

  takePeer (peer: string): void {
    this.requests--
    this.room.set(peer, (this.room.get(peer) ?? 0) - 1)
  }

  registryMay (): boolean { return this.registry > 0 }
  takeRegistry (): void { this.registry-- }
}
