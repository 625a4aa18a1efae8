// Admission attempts rate-limited per peer id, peers that failed a proof
// banned for a while, and failures counted per source address (FailureTable),
// since a new peer id costs nothing.
import { FailureTable } from './failure-table.js'

/** Peers tracked for the attempt rate limit (the oldest are forgotten first). */
const MAX_TRACKED_PEERS = 10_000

export interface ThrottleLimits {
  attemptsPerWindow: number
  windowMs: number
  banMs: number
  failuresPerSource: number
}

export class AdmissionThrottle {
  private readonly attempts = new Map<string, { windowStart: number, count: number }>()
  private readonly banned = new Map<string, number>()
  private readonly failures: FailureTable

  constructor (private readonly limits: ThrottleLimits) {
    this.failures = new FailureTable(limits.failuresPerSource, limits.banMs)
  }

  /** True while `peer` is banned after a failed proof. */
  isBanned (peer: string): boolean {
    const until = this.banned.get(peer)
    if (until === undefined) return false
    if (Date.now() > until) { this.banned.delete(peer); return false }
    return true
  }

  /** Records a failed proof: the peer is banned, the source counts one failure. */
  failed (peer: string, source: string): void {
    this.banned.set(peer, Date.now() + this.limits.banMs)
    this.failures.fail(source)
  }

  /** Whether an attempt from `peer` at `source` may run now (and counts it). */
  allow (peer: string, source: string): boolean {
    if (this.isBanned(peer) || this.failures.refused(source)) return false
    const now = Date.now()
    const a = this.attempts.get(peer)
    if (a === undefined || now - a.windowStart > this.limits.windowMs) {
      this.attempts.delete(peer)
      this.attempts.set(peer, { windowStart: now, count: 1 })
      for (const oldest of this.attempts.keys()) {
        if (this.attempts.size <= MAX_TRACKED_PEERS) break
        this.attempts.delete(oldest)
      }
      return true
    }
    a.count++
    return a.count <= this.limits.attemptsPerWindow
  }
}
