// Coalesces linearizable reads (etcd's linearizableReadLoop): at most one
// ReadIndex round is in flight; reads that arrive meanwhile wait for the next
// round, which starts as soon as the current one ends and serves all of them.
// A read is only ever answered by a round that started after it arrived, so
// each stays linearizable, and 64 concurrent reads cost one heartbeat round
// instead of 64.

interface Round { promise: Promise<number>, resolve: (index: number) => void, reject: (err: Error) => void }

function round (): Round {
  let resolve!: (index: number) => void
  let reject!: (err: Error) => void
  const promise = new Promise<number>((res, rej) => { resolve = res; reject = rej })
  // Every reader may have gone (aborted) by the time the round ends.
  promise.catch(() => {})
  return { promise, resolve, reject }
}

export class ReadBatcher {
  private next: Round | null = null
  private inFlight = false
  /** Rounds started (for tests and metrics). */
  rounds = 0

  /** `issue` starts one ReadIndex round and resolves with its read index. */
  constructor (private readonly issue: () => Promise<number>) {}

  /** Resolves with a read index confirmed by a round that started after this call. */
  read (signal?: AbortSignal): Promise<number> {
    signal?.throwIfAborted()
    if (this.next === null) {
      this.next = round()
      if (!this.inFlight) this.start()
    }
    const r = (this.next ?? this.current) as Round
    if (signal === undefined) return r.promise
    return new Promise<number>((resolve, reject) => {
      const abort = (): void => { reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')) }
      signal.addEventListener('abort', abort, { once: true })
      r.promise.then(resolve, reject).finally(() => { signal.removeEventListener('abort', abort) })
    })
  }

  private current: Round | null = null

  private start (): void {
    const r = this.next
    if (r === null) return
    this.next = null
    this.current = r
    this.inFlight = true
    this.rounds++
    let p: Promise<number>
    try {
      p = this.issue()
    } catch (err) {
      p = Promise.reject(err)
    }
    p.then(r.resolve, r.reject).finally(() => {
      this.inFlight = false
      this.current = null
      if (this.next !== null) this.start()
    })
  }
}
