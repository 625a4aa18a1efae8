// A deadline shared by every call made within the same slot of time: the
// fast paths of writes and reads take one signal from here instead of
// AbortSignal.timeout + AbortSignal.any per call (a timer, and a composite
// signal that the runtime tracks with weak references, for each request).

export class CoarseDeadline {
  private slot: { start: number, ac: AbortController } | undefined
  private readonly live = new Map<AbortController, NodeJS.Timeout>()

  /**
   * `ms`: the least time a signal lasts; `slotMs`: calls this close together
   * share a signal, which then fires between `ms` and `ms + slotMs` after each.
   */
  constructor (private readonly ms: number, private readonly slotMs: number) {}

  /** A signal that aborts (TimeoutError) at least `ms` from now, or at stop(). */
  signal (): AbortSignal {
    const now = performance.now()
    if (this.slot === undefined || now - this.slot.start >= this.slotMs) {
      const ac = new AbortController()
      const timer = setTimeout(() => {
        this.live.delete(ac)
        ac.abort(new DOMException(`no answer within ${this.ms / 1000} s`, 'TimeoutError'))
      }, this.ms + this.slotMs)
      timer.unref()
      this.live.set(ac, timer)
      this.slot = { start: now, ac }
    }
    return this.slot.ac.signal
  }

  /** Aborts every live signal with `reason`; later signals are new ones. */
  stop (reason: Error): void {
    for (const [ac, timer] of this.live) {
      clearTimeout(timer)
      ac.abort(reason)
    }
    this.live.clear()
    this.slot = undefined
  }
}
