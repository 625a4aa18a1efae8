// Lifeguard suspicion timing (memberlist suspicion.go / util.go): the pure
// maths, table-tested, plus a tick-counting `Suspicion` that owns one
// suspected member's confirmations. No timers: the core asks `expired(now)`.
import type { SwimConfig } from '../profiles.js'

/**
 * Minimum suspicion timeout: `mult · max(1, log10(N)) · interval`. Grows
 * slowly with the cluster because news takes ~log N gossip rounds to reach
 * everyone, and the accused node must hear it to refute.
 */
export function suspicionMinMs (suspicionMult: number, n: number, probeIntervalMs: number): number {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, n)))
  return Math.floor(suspicionMult * nodeScale * probeIntervalMs)
}

/** Maximum suspicion timeout: what a lone suspecter waits. */
export function suspicionMaxMs (config: Pick<SwimConfig, 'suspicionMult' | 'suspicionMaxTimeoutMult' | 'probeIntervalMs'>, n: number): number {
  return config.suspicionMaxTimeoutMult * suspicionMinMs(config.suspicionMult, n, config.probeIntervalMs)
}

/**
 * Lifeguard's remaining suspicion time. With `confirmations` independent
 * suspecters out of the `k` expected, the timeout falls logarithmically from
 * `max` to `min`: `max − log(c+1)/log(k+1) · (max − min)`, never below `min`;
 * `elapsed` is subtracted (the result may be negative: already expired).
 * With k < 1 no confirmations are expected and the timeout is `min`.
 */
export function remainingSuspicionMs (confirmations: number, k: number, elapsedMs: number, minMs: number, maxMs: number): number {
  if (k < 1) return minMs - elapsedMs
  const frac = Math.log(confirmations + 1) / Math.log(k + 1)
  const raw = maxMs - frac * (maxMs - minMs)
  const timeout = Math.max(minMs, Math.floor(raw))
  return timeout - elapsedMs
}

/**
 * Confirmations expected before the suspicion timeout reaches its minimum:
 * `suspicionMult − 2`, so that with peers probing at random phases the
 * nominal timeout is hit two probe intervals early; 0 when the cluster has
 * too few other members (N − 2, leaving out ourselves and the suspect).
 */
export function expectedConfirmations (suspicionMult: number, n: number): number {
  const k = suspicionMult - 2
  return n - 2 < k ? 0 : k
}

/**
 * The time within which a failed member is declared dead once its first
 * probe has failed: one probe interval (the failing probe round) plus the
 * maximum suspicion timeout a lone suspecter waits. Confirmations from other
 * probers usually shorten it to about `min`. Scenarios report detection time
 * as a ratio to this bound.
 */
export function suspicionBoundMs (config: Pick<SwimConfig, 'suspicionMult' | 'suspicionMaxTimeoutMult' | 'probeIntervalMs'>, n: number): number {
  return config.probeIntervalMs + suspicionMaxMs(config, n)
}

/** One member under suspicion: who has accused it, and since when (ticks). */
export class Suspicion {
  readonly incarnation: number
  readonly startTick: number
  private readonly k: number
  private readonly minMs: number
  private readonly maxMs: number
  private readonly tickMs: number
  private readonly confirmations = new Set<string>()

  constructor (init: { from: string, incarnation: number, startTick: number, k: number, minMs: number, maxMs: number, tickMs: number }) {
    this.incarnation = init.incarnation
    this.startTick = init.startTick
    this.k = init.k
    this.minMs = init.minMs
    this.maxMs = init.maxMs
    this.tickMs = init.tickMs
    // The first accuser is not a confirmation: it set the timer.
    this.confirmations.add(init.from)
  }

  /** Records an independent accuser; true when it is news (worth re-gossiping). */
  confirm (from: string): boolean {
    if (this.confirmations.size - 1 >= this.k) return false
    if (this.confirmations.has(from)) return false
    this.confirmations.add(from)
    return true
  }

  get confirmationCount (): number { return this.confirmations.size - 1 }

  expired (nowTick: number): boolean {
    const elapsedMs = (nowTick - this.startTick) * this.tickMs
    return remainingSuspicionMs(this.confirmationCount, this.k, elapsedMs, this.minMs, this.maxMs) <= 0
  }
}
