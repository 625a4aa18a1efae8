// The whole-blob sha256 of a partial blob, and (for large blobs) the byte
// work on its pieces, in a hashing thread (see blob-hasher-worker.ts): piece
// bytes are copied once into a reused slot buffer, which is handed to the
// thread with the message (transferred, not copied) and handed back with the
// answer; there they are hashed, checked, written and fed to the whole-blob
// hash. (A SharedArrayBuffer was used before: V8 copies into shared memory
// with relaxed atomic stores, several times slower than a plain copy.) Small blobs are
// hashed inline at completion, where a thread would cost more than it saves.
//
// The threads are shared by the blobs of the process: a blob goes to the
// thread with the fewest blobs, and a new thread starts only while every one
// has some and there are fewer than HASHER_MAX_THREADS. A thread left with
// no blob exits after HASHER_LINGER_MS. (One thread per blob started four to
// six of them, each a V8 isolate of about 40 ms CPU to start, for every image
// an agent pulled.)
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { ChunkList } from './pieces.js'

/** Blobs at least this large get a hashing thread. */
export const HASHER_THREAD_MIN_BYTES = 16 * 1024 * 1024
/**
 * Hashing threads at most: one thread hashes about 700 MB/s of pieces (two
 * sha256 passes), more than one blob's pull needs, but a machine with cores
 * to spare gets one per blob for up to 4 large blobs at once.
 */
export const HASHER_MAX_THREADS = Math.max(1, Math.min(4, availableParallelism() - 1))
/** A thread with no blob left exits after this long (a pull's next blob reuses it). */
export const HASHER_LINGER_MS = 2_000
/**
 * Slot buffers per hashing thread: pieces waiting for the thread plus the
 * one it works on. The thread handles pieces one at a time, so a few keep it
 * busy; more would only hold memory (a slot is one piece).
 */
export const HASHER_SLOTS = 4

export interface StoredPiece {
  /** The piece had the expected length and (when one was given) the expected hash. */
  ok: boolean
  /** Its bytes were written now (false when it was held already, or not ok). */
  written: boolean
  hash: Uint8Array
}

export interface BlobHasher {
  pieceWritten: (index: number) => void
  /**
   * Hashes piece `index`, and writes it at its offset only if it is ok.
   * `data` may be a list of chunks as read off a stream: it is copied once.
   * Absent on the inline hasher: the caller does the work itself.
   */
  store?: (index: number, data: Uint8Array | ChunkList, expected: Uint8Array | undefined) => Promise<StoredPiece>
  /** The digest of the whole file; call once every piece is written. */
  digest: () => Promise<string>
  terminate: () => Promise<void>
}

type Reply =
  | { t: 'stored', blob: number, id: number, ok: boolean, written: boolean, hash: Uint8Array, slot: ArrayBuffer }
  | { t: 'digest', blob: number, digest: string }
  | { t: 'error', blob: number, id?: number, message: string, slot?: ArrayBuffer }

/**
 * Slot buffers not in use, by size, shared by every hashing thread of the
 * process while any is alive: a fresh buffer costs its page faults on the
 * first copy into it (8 nodes pulling 5 blobs each faulted in 640 MiB), a
 * reused one does not. At most SPARE_SLOTS are kept; none once the last
 * hasher is gone.
 */
const SPARE_SLOTS = 8
const spares = new Map<number, ArrayBuffer[]>()
let liveHashers = 0

function spareSlot (bytes: number): ArrayBuffer {
  return spares.get(bytes)?.pop() ?? new ArrayBuffer(bytes)
}

function keepSpare (slot: ArrayBuffer): void {
  if (liveHashers === 0) return
  let list = spares.get(slot.byteLength)
  if (list === undefined) { list = []; spares.set(slot.byteLength, list) }
  if (list.length < SPARE_SLOTS) list.push(slot)
}

function hasherGone (): void {
  if (--liveHashers === 0) spares.clear()
}

/** Spare slot buffers kept now (tests). */
export function spareSlotCount (): number {
  let n = 0
  for (const list of spares.values()) n += list.length
  return n
}

/**
 * Piece buffers that travel to the hashing thread and back; `acquire` waits
 * while all of this hasher's are out. A buffer that does not come back (the
 * thread failed) is given up, and a new one may be made in its place.
 */
class SlotPool {
  /** Holders and waiters. */
  private out = 0
  private readonly waiters: Array<(slot: ArrayBuffer) => void> = []
  constructor (private readonly slotBytes: number, private readonly max: number) {}

  async acquire (): Promise<ArrayBuffer> {
    this.out++
    if (this.out <= this.max) return spareSlot(this.slotBytes)
    return await new Promise(resolve => this.waiters.push(resolve))
  }

  /** The buffer came back (`slot`), or is lost (undefined). */
  release (slot: ArrayBuffer | undefined): void {
    const usable = slot !== undefined && slot.byteLength === this.slotBytes ? slot : undefined
    this.out--
    const w = this.waiters.shift()
    if (w !== undefined) w(usable ?? spareSlot(this.slotBytes))
    else if (usable !== undefined) keepSpare(usable)
  }
}

function copyInto (slot: ArrayBuffer, data: Uint8Array | ChunkList): number {
  const view = new Uint8Array(slot)
  if (data instanceof Uint8Array) { view.set(data); return data.length }
  let off = 0
  for (const chunk of data) { view.set(chunk, off); off += chunk.length }
  return off
}

/** A hashing thread and the blobs it works for, by id. */
interface HasherThread {
  worker: Worker
  blobs: Map<number, { onMessage: (m: Reply) => void, fail: (err: Error) => void }>
  linger?: NodeJS.Timeout
}

const threads: HasherThread[] = []
let nextBlob = 0

/** Hashing threads running now (tests). */
export function hasherThreadCount (): number {
  return threads.length
}

/** Takes `th` out of the pool: no new blob goes to it. */
function dropThread (th: HasherThread): void {
  const at = threads.indexOf(th)
  if (at >= 0) threads.splice(at, 1)
}

function startThread (): HasherThread {
  const worker = new Worker(new URL('./blob-hasher-worker.js', import.meta.url))
  worker.unref()
  const th: HasherThread = { worker, blobs: new Map() }
  threads.push(th)
  const fail = (err: Error): void => {
    dropThread(th)
    clearTimeout(th.linger)
    for (const b of [...th.blobs.values()]) b.fail(err)
    th.blobs.clear()
  }
  worker.on('error', fail)
  worker.on('exit', () => { fail(new Error('blob hasher thread exited')) })
  worker.on('message', (m: Reply) => {
    const b = th.blobs.get(m.blob)
    if (b !== undefined) b.onMessage(m)
    // The answer to a store sent before its blob was terminated: only the slot is left to keep.
    else if (m.t !== 'digest' && m.slot !== undefined) keepSpare(m.slot)
  })
  return th
}

/** The thread with the fewest blobs, or a new one while each has some and there is room. */
function threadForBlob (): HasherThread {
  let best: HasherThread | undefined
  for (const th of threads) if (best === undefined || th.blobs.size < best.blobs.size) best = th
  if (best === undefined || (best.blobs.size > 0 && threads.length < HASHER_MAX_THREADS)) best = startThread()
  clearTimeout(best.linger)
  best.linger = undefined
  return best
}

function leaveThread (th: HasherThread, blob: number): void {
  th.blobs.delete(blob)
  if (th.blobs.size > 0 || !threads.includes(th)) return
  th.linger = setTimeout(() => {
    if (th.blobs.size > 0) return
    dropThread(th)
    void th.worker.terminate()
  }, HASHER_LINGER_MS)
  th.linger.unref()
}

export function createBlobHasher (path: string, size: number, pieceSize: number, pieceCount: number): BlobHasher {
  if (size < HASHER_THREAD_MIN_BYTES) return inlineHasher(path, size)
  const th = threadForBlob()
  const blob = nextBlob++
  liveHashers++
  let failed: Error | undefined
  let gone = false
  let nextId = 0
  const slots = new SlotPool(Math.max(1, Math.min(pieceSize, size)), HASHER_SLOTS)
  const pending = new Map<number, { resolve: (s: StoredPiece) => void, reject: (e: Error) => void }>()
  let digestWaiter: { resolve: (d: string) => void, reject: (e: Error) => void } | undefined
  const failAll = (err: Error): void => {
    failed ??= err
    for (const p of pending.values()) { slots.release(undefined); p.reject(err) }
    pending.clear()
    digestWaiter?.reject(err)
    digestWaiter = undefined
  }
  /** The store waiting for answer `id`, no longer pending; its slot back in the pool. */
  const answered = (id: number, slot: ArrayBuffer | undefined): { resolve: (s: StoredPiece) => void, reject: (e: Error) => void } | undefined => {
    const p = pending.get(id)
    pending.delete(id)
    if (p !== undefined) slots.release(slot)
    return p
  }
  /** This blob is done with the thread (its file closed there, or closing). */
  const leave = (): void => {
    if (gone) return
    gone = true
    hasherGone()
    leaveThread(th, blob)
  }
  th.blobs.set(blob, {
    fail: (err) => { failAll(err); leave() },
    onMessage: (m) => {
      if (m.t === 'stored') {
        answered(m.id, m.slot)?.resolve({ ok: m.ok, written: m.written, hash: m.hash })
      } else if (m.t === 'digest') {
        digestWaiter?.resolve(m.digest)
        digestWaiter = undefined
      } else if (m.id !== undefined) {
        answered(m.id, m.slot)?.reject(new Error(`blob hasher: ${m.message}`))
      } else {
        failAll(new Error(`blob hasher: ${m.message}`))
      }
    }
  })
  th.worker.postMessage({ t: 'open', blob, path, size, pieceSize, pieceCount })
  return {
    pieceWritten: (index) => { if (failed === undefined) th.worker.postMessage({ t: 'piece', blob, index }) },
    store: async (index, data, expected) => {
      if (failed !== undefined) throw failed
      if (data.byteLength > pieceSize) return { ok: false, written: false, hash: new Uint8Array(0) }
      const slot = await slots.acquire()
      if (failed !== undefined) { slots.release(slot); throw failed }
      const length = copyInto(slot, data)
      const id = nextId++
      return await new Promise<StoredPiece>((resolve, reject) => {
        pending.set(id, { resolve, reject })
        // The slot is handed over (it comes back with the answer). A fresh
        // copy of the 32 expected bytes: a view would clone its whole backing buffer.
        th.worker.postMessage({ t: 'store', blob, id, index, slot, length, expected: expected !== undefined ? new Uint8Array(expected) : null }, [slot])
      })
    },
    digest: async () => {
      if (failed !== undefined) throw failed
      try {
        return await new Promise<string>((resolve, reject) => {
          digestWaiter = { resolve, reject }
          th.worker.postMessage({ t: 'finish', blob })
        })
      } finally {
        leave()
      }
    },
    terminate: async () => {
      if (gone) return
      // Stores already sent are still carried out there (into a file no one
      // reads as held); their answers come back to no one.
      th.worker.postMessage({ t: 'drop', blob })
      failAll(new Error('blob hasher closed'))
      leave()
    }
  }
}

function inlineHasher (path: string, size: number): BlobHasher {
  return {
    pieceWritten: () => {},
    digest: async () => {
      const hash = createHash('sha256')
      const fh = await open(path, 'r')
      try {
        const buf = new Uint8Array(Math.max(1, Math.min(4 * 1024 * 1024, size)))
        let pos = 0
        while (pos < size) {
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos)
          if (bytesRead === 0) break
          hash.update(buf.subarray(0, bytesRead))
          pos += bytesRead
        }
      } finally {
        await fh.close()
      }
      return `sha256:${hash.digest('hex')}`
    },
    terminate: async () => {}
  }
}
