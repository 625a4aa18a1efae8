// A hashing thread of BlobHasher. It owns the byte work of the partial blobs
// assigned to it, so the agent's event loop (which also keeps SWIM and Raft
// time) never hashes or writes piece bytes: `store` hashes a piece (in a slot
// buffer handed over with the message and handed back with the answer),
// checks it against the expected hash, writes it at its offset, and feeds it
// to its blob's whole sha256 straight from memory when it is the next piece
// in order; pieces that arrive out of order are read back from the file once
// the hash gets to them. Every message names its blob.
import { createHash, type Hash } from 'node:crypto'
import { closeSync, openSync, readSync, writeSync } from 'node:fs'
import { parentPort } from 'node:worker_threads'

interface Shape { path: string, size: number, pieceSize: number, pieceCount: number }
type Msg =
  | { t: 'open', blob: number } & Shape
  | { t: 'store', blob: number, id: number, index: number, slot: ArrayBuffer, length: number, expected: Uint8Array | null }
  | { t: 'piece', blob: number, index: number }
  | { t: 'finish', blob: number }
  | { t: 'drop', blob: number }

interface Blob {
  shape: Shape
  fd: number
  /** 1 where the piece's bytes are in the file (written here or reported by the main thread). */
  have: Uint8Array
  whole: Hash
  /** Pieces [0, next) are in `whole`. */
  next: number
}

const blobs = new Map<number, Blob>()
/** For pieces read back from a file; one blob at a time uses it. */
let readBuf: Buffer | undefined

function blobOf (id: number): Blob {
  const b = blobs.get(id)
  if (b === undefined) throw new Error(`no blob ${id} on this thread`)
  return b
}

function range (b: Blob, i: number): { start: number, length: number } {
  const start = i * b.shape.pieceSize
  return { start, length: Math.min(b.shape.pieceSize, b.shape.size - start) }
}

function hashFromFile (b: Blob, i: number): void {
  const { start, length } = range(b, i)
  if (readBuf === undefined || readBuf.length < length) readBuf = Buffer.allocUnsafe(Math.max(1, length))
  let off = 0
  while (off < length) {
    const n = readSync(b.fd, readBuf, off, length - off, start + off)
    if (n === 0) throw new Error(`data file ends at ${start + off}, expected ${b.shape.size} bytes`)
    off += n
  }
  b.whole.update(readBuf.subarray(0, length))
}

function advance (b: Blob): void {
  while (b.next < b.shape.pieceCount && b.have[b.next] === 1) hashFromFile(b, b.next++)
}

function equal (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function store (m: Extract<Msg, { t: 'store' }>): void {
  const b = blobOf(m.blob)
  const { start, length } = range(b, m.index)
  const data = new Uint8Array(m.slot, 0, m.length)
  const hash = new Uint8Array(createHash('sha256').update(data).digest())
  const ok = data.length === length && (m.expected === null || equal(hash, m.expected))
  let written = false
  if (ok && b.have[m.index] !== 1) {
    let off = 0
    while (off < length) off += writeSync(b.fd, data, off, length - off, start + off)
    b.have[m.index] = 1
    written = true
    if (m.index === b.next) {
      b.whole.update(data)
      b.next++
      advance(b)
    }
  }
  parentPort?.postMessage({ t: 'stored', blob: m.blob, id: m.id, ok, written, hash, slot: m.slot }, [hash.buffer, m.slot])
}

function close (id: number): void {
  const b = blobs.get(id)
  blobs.delete(id)
  if (b !== undefined) closeSync(b.fd)
}

parentPort?.on('message', (m: Msg) => {
  try {
    switch (m.t) {
      case 'open': {
        const shape = { path: m.path, size: m.size, pieceSize: m.pieceSize, pieceCount: m.pieceCount }
        blobs.set(m.blob, { shape, fd: openSync(m.path, 'r+'), have: new Uint8Array(m.pieceCount), whole: createHash('sha256'), next: 0 })
        return
      }
      case 'store': return store(m)
      case 'piece': {
        const b = blobOf(m.blob)
        if (m.index >= 0 && m.index < b.shape.pieceCount) b.have[m.index] = 1
        return advance(b)
      }
      case 'finish': {
        const b = blobOf(m.blob)
        b.have.fill(1)
        try {
          advance(b)
        } finally {
          close(m.blob)
        }
        parentPort?.postMessage({ t: 'digest', blob: m.blob, digest: `sha256:${b.whole.digest('hex')}` })
        return
      }
      case 'drop': return close(m.blob)
    }
  } catch (err) {
    const slot = m.t === 'store' && m.slot.byteLength > 0 ? m.slot : undefined
    parentPort?.postMessage({ t: 'error', blob: m.blob, id: m.t === 'store' ? m.id : undefined, message: (err as Error).message, ...(slot !== undefined ? { slot } : {}) }, slot !== undefined ? [slot] : [])
  }
})
