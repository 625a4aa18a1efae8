// Merging the log streams of a capsule's replicas into one: by time when
// every stream ends (a k-way merge holding one line per stream), or as the
// lines arrive when following (a stream with nothing new must not hold up
// the others).

interface Timed { time: number }

/** Yields the lines of every source in time order; each source must already be in time order. */
export async function * mergeByTime<T extends Timed> (sources: Array<AsyncIterable<T>>): AsyncGenerator<T> {
  const its = sources.map(s => s[Symbol.asyncIterator]())
  try {
    const heads = await Promise.all(its.map(async it => await it.next()))
    for (;;) {
      let best = -1
      for (let i = 0; i < heads.length; i++) {
        const h = heads[i]!
        if (h.done === true) continue
        if (best < 0 || h.value.time < (heads[best] as IteratorYieldResult<T>).value.time) best = i
      }
      if (best < 0) return
      yield (heads[best] as IteratorYieldResult<T>).value
      heads[best] = await its[best]!.next()
    }
  } finally {
    await Promise.allSettled(its.map(async it => await it.return?.()))
  }
}

/** Yields each source's lines as soon as they come; ends when every source ends. A source's error ends it all. */
export async function * mergeAsArrived<T> (sources: Array<AsyncIterable<T>>): AsyncGenerator<T> {
  const its = sources.map(s => s[Symbol.asyncIterator]())
  const pending = new Map<number, Promise<{ i: number, r: IteratorResult<T> }>>()
  const pull = (i: number): void => {
    const next = its[i]!.next().then(r => ({ i, r }))
    // Raced below while we listen; one that fails after we stopped (the stream closing) must not go unhandled.
    next.catch(() => undefined)
    pending.set(i, next)
  }
  its.forEach((_, i) => { pull(i) })
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values())
      if (r.done === true) { pending.delete(i); continue }
      pull(i)
      yield r.value
    }
  } finally {
    // The sources' own finally blocks close their streams; a pending next() settles when they do.
    await Promise.allSettled(its.map(async it => await it.return?.()))
  }
}
