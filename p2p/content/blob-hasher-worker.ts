// Worker thread of BlobHasher. It owns the byte work of one partial blob so
// the agent's event loop (which also keeps SWIM and Raft time) never hashes
// or writes piece bytes: `store` hashes a piece (in a slot buffer handed over
// with the message and handed back with the answer), checks it against the
// expected hash, writes it at its offset, and feeds it to the whole-blob
// sha256 straight from memory when it is the next piece in order; pieces
// that arrive out of order are read back from the file once the hash gets
// to them.
import { createHash } from 'node:crypto'
import { closeSync, openSync, readSync, writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'

interface Init { path: string, size: number, pieceSize: number, pieceCount: number }
type Msg =
  | { t: 'store', id: number, index: number, slot: ArrayBuffer, length: number, expected: Uint8Array | null }
  | { t: 'piece', index: number }
  | { t: 'finish' }

const init = workerData as Init
const fd = openSync(init.path, 'r+')
/** 1 where the piece's bytes are in the file (written here or reported by the main thread). */
const have = new Uint8Array(init.pieceCount)
const whole = createHash('sha256')
let readBuf: Buffer | undefined
/** Pieces [0, next) are in `whole`. */
let next = 0

function range (i: number): { start: number, length: number } {
  const start = i * init.pieceSize
  return { start, length: Math.min(init.pieceSize, init.size - start) }
}

function hashFromFile (i: number): void {
  const { start, length } = range(i)
  readBuf ??= Buffer.allocUnsafe(Math.max(1, Math.min(init.pieceSize, init.size)))
  let off = 0
  while (off < length) {
    const n = readSync(fd, readBuf, off, length - off, start + off)
    if (n === 0) throw new Error(`data file ends at ${start + off}, expected ${init.size} bytes`)
    off += n
  }
  whole.update(readBuf.subarray(0, length))
}

function advance (): void {
  while (next < init.pieceCount && have[next] === 1) hashFromFile(next++)
}

function equal (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function store (m: Extract<Msg, { t: 'store' }>): void {
  const { start, length } = range(m.index)
  const data = new Uint8Array(m.slot, 0, m.length)
  const hash = new Uint8Array(createHash('sha256').update(data).digest())
  const ok = data.length === length && (m.expected === null || equal(hash, m.expected))
  let written = false
  if (ok && have[m.index] !== 1) {
    let off = 0
    while (off < length) off += writeSync(fd, data, off, length - off, start + off)
    have[m.index] = 1
    written = true
    if (m.index === next) {
      whole.update(data)
      next++
      advance()
    }
  }
  parentPort?.postMessage({ t: 'stored', id: m.id, ok, written, hash, slot: m.slot }, [hash.buffer, m.slot])
}

parentPort?.on('message', (m: Msg) => {
  try {
    switch (m.t) {
      case 'store': return store(m)
      case 'piece':
        if (m.index >= 0 && m.index < init.pieceCount) have[m.index] = 1
        return advance()
      case 'finish':
        have.fill(1)
        advance()
        closeSync(fd)
        parentPort?.postMessage({ t: 'digest', digest: `sha256:${whole.digest('hex')}` })
    }
  } catch (err) {
    const slot = m.t === 'store' && m.slot.byteLength > 0 ? m.slot : undefined
    parentPort?.postMessage({ t: 'error', id: m.t === 'store' ? m.id : undefined, message: (err as Error).message, ...(slot !== undefined ? { slot } : {}) }, slot !== undefined ? [slot] : [])
  }
})
