// The digests of an S3 body (MD5 for the ETag, the payload's SHA-256 when
// the signature covers it, the client's checksums), computed in a hashing
// thread (body-hasher-worker.ts) for large bodies so the event loop only
// cuts and writes chunks: MD5 alone runs at about 500 MB/s, as slow as the
// FastCDC cut itself. Bytes are copied once into a slot buffer that is
// handed to the thread with the message (transferred, not copied) and
// handed back once hashed; with every slot away, the body waits (its
// stream is not read), so memory per body is SLOTS x SLOT_BYTES.
// Small bodies are hashed inline, where a message would cost more.
//
// The threads are shared: a body goes to the thread with the fewest bodies,
// and a new one starts only while every thread has some and there are
// fewer than BODY_HASHER_MAX_THREADS; an idle thread exits after a linger.
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { summer } from './summer.js'

/** Bodies at least this large (declared) are hashed in a thread. */
export const BODY_HASHER_MIN_BYTES = 4 * 1024 * 1024
export const BODY_HASHER_SLOT_BYTES = 1024 * 1024
export const BODY_HASHER_SLOTS = 3
export const BODY_HASHER_MAX_THREADS = Math.max(1, Math.min(4, availableParallelism() - 1))
const LINGER_MS = 2_000

/** Running digests of one body: `update` in order, then `digests` once. */
export interface BodySums {
  update: (b: Uint8Array) => Promise<void> | undefined
  digests: () => Promise<Map<string, Buffer>>
  /** Forget the body (it failed); safe after digests too. */
  drop: () => void
}


/** `algs`: md5, sha1, sha256, crc32, crc32c. A thread when `size` is known and large. */
export function bodySums (algs: string[], size: number | undefined): BodySums {
  if (size === undefined || size < BODY_HASHER_MIN_BYTES) return inlineSums(algs)
  return new ThreadSums(pickThread(), algs)
}

function inlineSums (algs: string[]): BodySums {
  const sums = algs.map(a => [a, summer(a)] as const)
  return {
    update: b => { for (const [, s] of sums) s.update(b); return undefined },
    digests: async () => new Map(sums.map(([a, s]) => [a, s.digest()])),
    drop: () => {}
  }
}

type Reply =
  | { t: 'slot', id: number, slot: ArrayBuffer }
  | { t: 'digests', id: number, digests: Record<string, Uint8Array> }
  | { t: 'error', id: number, message: string }

interface Waiter { slot: (s: ArrayBuffer) => void, digests: (d: Record<string, Uint8Array>) => void, fail: (e: Error) => void }

class HasherThread {
  readonly worker = new Worker(new URL('./body-hasher-worker.js', import.meta.url))
  readonly bodies = new Map<number, Waiter>()
  private linger: ReturnType<typeof setTimeout> | undefined
  dead = false

  constructor () {
    this.worker.on('message', (m: Reply) => {
      const w = this.bodies.get(m.id)
      if (w === undefined) return
      if (m.t === 'slot') w.slot(m.slot)
      else if (m.t === 'digests') w.digests(m.digests)
      else w.fail(new Error(`body hashing thread: ${m.message}`))
    })
    const die = (err: Error): void => {
      this.dead = true
      threads.delete(this)
      for (const w of this.bodies.values()) w.fail(err)
      this.bodies.clear()
    }
    this.worker.on('error', die)
    this.worker.on('exit', code => { die(new Error(`body hashing thread exited (${code})`)) })
    this.worker.unref()
  }

  add (id: number, w: Waiter, algs: string[]): void {
    if (this.linger !== undefined) { clearTimeout(this.linger); this.linger = undefined }
    this.bodies.set(id, w)
    this.worker.postMessage({ t: 'open', id, algs })
  }

  remove (id: number): void {
    if (!this.bodies.delete(id)) return
    if (!this.dead) this.worker.postMessage({ t: 'drop', id })
    if (this.bodies.size === 0 && !this.dead) {
      this.linger = setTimeout(() => { threads.delete(this); void this.worker.terminate() }, LINGER_MS)
      this.linger.unref()
    }
  }
}

const threads = new Set<HasherThread>()
/** Slot buffers of finished bodies, for the next ones (no 1 MiB allocation per slot per body). */
const spareSlots: ArrayBuffer[] = []
const MAX_SPARE_SLOTS = 16
let nextId = 1

function pickThread (): HasherThread {
  let best: HasherThread | undefined
  for (const t of threads) if (best === undefined || t.bodies.size < best.bodies.size) best = t
  if (best === undefined || (best.bodies.size > 0 && threads.size < BODY_HASHER_MAX_THREADS)) {
    best = new HasherThread()
    threads.add(best)
  }
  return best
}

class ThreadSums implements BodySums {
  private readonly id = nextId++
  private readonly free: ArrayBuffer[] = []
  private made = 0
  private cur: Uint8Array | undefined
  private filled = 0
  private wantSlot: ((s: ArrayBuffer) => void) | undefined
  private result: ((d: Record<string, Uint8Array>) => void) | undefined
  private failure: Error | undefined
  private onFail: ((e: Error) => void) | undefined

  constructor (private readonly thread: HasherThread, algs: string[]) {
    thread.add(this.id, {
      slot: s => { if (this.wantSlot !== undefined) { const f = this.wantSlot; this.wantSlot = undefined; f(s) } else this.free.push(s) },
      digests: d => { this.result?.(d) },
      fail: e => { this.failure = e; this.onFail?.(e) }
    }, algs)
  }

  private async slot (): Promise<Uint8Array> {
    const s = this.free.pop()
    if (s !== undefined) return new Uint8Array(s)
    if (this.made < BODY_HASHER_SLOTS) { this.made++; return new Uint8Array(spareSlots.pop() ?? new ArrayBuffer(BODY_HASHER_SLOT_BYTES)) }
    return new Uint8Array(await this.wait<ArrayBuffer>(r => { this.wantSlot = r }))
  }

  private async wait<T> (register: (resolve: (v: T) => void) => void): Promise<T> {
    if (this.failure !== undefined) throw this.failure
    return await new Promise<T>((resolve, reject) => { this.onFail = reject; register(resolve) })
  }

  private send (): void {
    if (this.cur === undefined || this.filled === 0) return
    const buf = this.cur.buffer as ArrayBuffer
    this.thread.worker.postMessage({ t: 'data', id: this.id, slot: buf, length: this.filled }, [buf])
    this.cur = undefined
    this.filled = 0
  }

  update (b: Uint8Array): Promise<void> | undefined {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    // Fast path: fits the current slot.
    if (this.cur !== undefined && this.cur.length - this.filled >= b.length) {
      this.cur.set(b, this.filled)
      this.filled += b.length
      if (this.filled === this.cur.length) this.send()
      return undefined
    }
    return this.fill(b)
  }

  private async fill (b: Uint8Array): Promise<void> {
    let off = 0
    while (off < b.length) {
      if (this.cur === undefined) this.cur = await this.slot()
      const n = Math.min(b.length - off, this.cur.length - this.filled)
      this.cur.set(b.subarray(off, off + n), this.filled)
      this.filled += n
      off += n
      if (this.filled === this.cur.length) this.send()
    }
  }

  async digests (): Promise<Map<string, Buffer>> {
    this.send()
    const p = this.wait<Record<string, Uint8Array>>(r => { this.result = r })
    this.thread.worker.postMessage({ t: 'end', id: this.id })
    try {
      const d = await p
      return new Map(Object.entries(d).map(([a, v]) => [a, Buffer.from(v)]))
    } finally {
      this.release()
    }
  }

  drop (): void {
    this.release()
  }

  private release (): void {
    this.thread.remove(this.id)
    if (this.cur !== undefined && this.filled === 0) { this.free.push(this.cur.buffer as ArrayBuffer); this.cur = undefined }
    for (const s of this.free.splice(0)) if (spareSlots.length < MAX_SPARE_SLOTS) spareSlots.push(s)
  }
}
