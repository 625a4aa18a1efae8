// Piggyback broadcast queue (memberlist TransmitLimitedQueue): each piece of
// news is retransmitted a bounded number of times, least-sent first; newer
// news about a member replaces older news about it; the queue itself is
// bounded and sheds the most-retransmitted items first.
import type { Gossip } from '../messages.js'

/** Retransmissions of one broadcast: `mult · ceil(log10(N + 1))`. */
export function retransmitLimit (retransmitMult: number, n: number): number {
  return retransmitMult * Math.ceil(Math.log10(n + 1))
}

interface Entry {
  gossip: Gossip
  size: number
  transmits: number
  /** Insertion order: among equally-sent items, newest goes first. */
  order: number
}

export class BroadcastQueue {
  private readonly entries = new Map<string, Entry>()
  private order = 0
  private readonly maxItems: number

  constructor (maxItems: number) {
    this.maxItems = maxItems
  }

  get length (): number { return this.entries.size }

  /** Queues news about `gossip.id`, replacing older queued news about the same member. */
  push (gossip: Gossip, size: number): void {
    this.entries.set(gossip.id, { gossip, size, transmits: 0, order: this.order++ })
    if (this.entries.size > this.maxItems) this.prune(this.maxItems)
  }

  /**
   * Takes broadcasts fitting in `budget` bytes (each item costs its size plus
   * `overhead`), least-transmitted first; items reaching `limit` transmits
   * leave the queue.
   */
  take (budget: number, overhead: number, limit: number, maxItems: number): Gossip[] {
    if (this.entries.size === 0 || budget <= 0) return []
    const sorted = [...this.entries.values()].sort((a, b) => a.transmits - b.transmits || b.order - a.order)
    const out: Gossip[] = []
    let used = 0
    for (const e of sorted) {
      if (out.length >= maxItems) break
      if (used + e.size + overhead > budget) continue
      used += e.size + overhead
      out.push(e.gossip)
      e.transmits++
      if (e.transmits >= limit) this.entries.delete(e.gossip.id)
    }
    return out
  }

  /** Keeps at most `max` items, dropping the most-retransmitted (oldest first among equals). */
  prune (max: number): void {
    if (this.entries.size <= max) return
    const sorted = [...this.entries.values()].sort((a, b) => b.transmits - a.transmits || a.order - b.order)
    for (const e of sorted.slice(0, this.entries.size - max)) this.entries.delete(e.gossip.id)
  }

  clear (): void { this.entries.clear() }
}
