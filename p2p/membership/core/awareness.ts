// Lifeguard local health (memberlist awareness.go): a score that rises when
// this node shows signs of being the slow one — probes that fail while the
// relays' nacks also go missing, or having to refute suspicions about
// itself — and falls with each successful probe. Timeouts are stretched by
// (score + 1), so a struggling node probes less and accuses less.

export class Awareness {
  private score = 0
  private readonly max: number

  /** `maxMultiplier`: the largest factor timeouts are scaled by (score stays below it). */
  constructor (maxMultiplier: number) {
    this.max = Math.max(1, Math.floor(maxMultiplier))
  }

  applyDelta (delta: number): void {
    this.score = Math.min(this.max - 1, Math.max(0, this.score + delta))
  }

  getHealthScore (): number { return this.score }

  /** Scales a timeout (in ticks or ms) by the current health multiplier. */
  scale (timeout: number): number { return timeout * (this.score + 1) }
}
