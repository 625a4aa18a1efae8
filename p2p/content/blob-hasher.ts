// The whole-blob sha256 of a partial blob, and (for large blobs) the byte
// work on its pieces, in a worker thread (see blob-hasher-worker.ts): piece
// bytes are copied once into a reused slot buffer, which is handed to the
// thread with the message (transferred, not copied) and handed back with the
// answer; there they are hashed, checked, written and fed to the whole-blob
// hash. (A SharedArrayBuffer was used before: V8 copies into shared memory
// with relaxed atomic stores, several times slower than a plain copy.) Small blobs are
// hashed inline at completion, where a thread would cost more than it saves.
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { Worker } from 'node:worker_threads'
import type { ChunkList } from './pieces.js'

/** Blobs at least this large get a hashing thread. */
export const HASHER_THREAD_MIN_BYTES = 16 * 1024 * 1024
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
  | { t: 'stored', id: number, ok: boolean, written: boolean, hash: Uint8Array, slot: ArrayBuffer }
  | { t: 'digest', digest: string }
  | { t: 'error', id?: number, message: string, slot?: ArrayBuffer }

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

export function createBlobHasher (path: string, size: number, pieceSize: number, pieceCount: number): BlobHasher {
  if (size < HASHER_THREAD_MIN_BYTES) return inlineHasher(path, size)
  const worker = new Worker(new URL('./blob-hasher-worker.js', import.meta.url), { workerData: { path, size, pieceSize, pieceCount } })
  worker.unref()
  liveHashers++
  let failed: Error | undefined
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
  worker.on('error', failAll)
  worker.on('exit', () => { hasherGone(); failAll(new Error('blob hasher thread exited')) })
  worker.on('message', (m: Reply) => {
    if (m.t === 'stored') {
      const p = pending.get(m.id)
      pending.delete(m.id)
      if (p !== undefined) slots.release(m.slot)
      p?.resolve({ ok: m.ok, written: m.written, hash: m.hash })
    } else if (m.t === 'digest') {
      digestWaiter?.resolve(m.digest)
      digestWaiter = undefined
    } else if (m.id !== undefined) {
      const p = pending.get(m.id)
      pending.delete(m.id)
      if (p !== undefined) slots.release(m.slot)
      p?.reject(new Error(`blob hasher: ${m.message}`))
    } else {
      failAll(new Error(`blob hasher: ${m.message}`))
    }
  })
  return {
    pieceWritten: (index) => { if (failed === undefined) worker.postMessage({ t: 'piece', index }) },
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
        worker.postMessage({ t: 'store', id, index, slot, length, expected: expected !== undefined ? new Uint8Array(expected) : null }, [slot])
      })
    },
    digest: async () => {
      if (failed !== undefined) throw failed
      try {
        return await new Promise<string>((resolve, reject) => {
          digestWaiter = { resolve, reject }
          worker.postMessage({ t: 'finish' })
        })
      } finally {
        await worker.terminate()
      }
    },
    terminate: async () => { await worker.terminate() }
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
