// A periodic round of leader-side work that never overlaps itself: run on a
// timer, kicked soon after a change, and run once more when kicked while
// busy (so no change is missed). `stop()` aborts the signal rounds get.
export class RoundLoop {
  private timer: NodeJS.Timeout | undefined
  private busy = false
  private again = false
  private readonly ac = new AbortController()

  /** `round` resolves true when it changed something the next round should look at at once. */
  constructor (private readonly intervalMs: number, private readonly round: (signal: AbortSignal) => Promise<boolean>) {}

  get signal (): AbortSignal { return this.ac.signal }

  start (): void {
    this.timer = setInterval(() => { void this.run() }, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    this.ac.abort()
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  kick (): void { setImmediate(() => { void this.run() }) }

  async run (): Promise<void> {
    if (this.ac.signal.aborted) return
    if (this.busy) { this.again = true; return }
    this.busy = true
    try {
      do {
        this.again = false
        if (await this.round(this.ac.signal)) this.again = true
      } while (this.again && !this.ac.signal.aborted)
    } finally {
      this.busy = false
    }
  }
}
