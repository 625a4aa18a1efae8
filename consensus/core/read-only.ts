// ReadIndex bookkeeping on the leader (thesis §6.4): a read is safe at the
// commit index recorded when it arrived, once a quorum has answered a
// heartbeat sent after it. Requests are confirmed in arrival order.

export interface PendingRead { context: string, index: number, from: string, acks: Set<string> }

export class ReadOnly {
  private readonly pending = new Map<string, PendingRead>()
  private queue: string[] = []

  constructor (readonly maxPending: number) {}

  size (): number { return this.queue.length }

  /** Returns false when the context is already queued or the queue is full. */
  add (context: string, index: number, from: string, self: string): boolean {
    if (this.pending.has(context) || this.queue.length >= this.maxPending) return false
    this.pending.set(context, { context, index, from, acks: new Set([self]) })
    this.queue.push(context)
    return true
  }

  recvAck (from: string, context: string): Set<string> | undefined {
    const p = this.pending.get(context)
    if (p === undefined) return undefined
    p.acks.add(from)
    return p.acks
  }

  /** Removes and returns every request queued up to and including `context`. */
  advance (context: string): PendingRead[] {
    const at = this.queue.indexOf(context)
    if (at < 0) return []
    const done = this.queue.slice(0, at + 1)
    this.queue = this.queue.slice(at + 1)
    const out: PendingRead[] = []
    for (const c of done) {
      const p = this.pending.get(c)
      this.pending.delete(c)
      if (p !== undefined) out.push(p)
    }
    return out
  }

  lastContext (): string | undefined { return this.queue[this.queue.length - 1] }

  reset (): void {
    this.pending.clear()
    this.queue = []
  }
}
