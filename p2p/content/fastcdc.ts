// FastCDC content-defined chunking (Xia et al., USENIX ATC 2016): a gear
// rolling hash, cut where the hash's masked bits are zero, with normalized
// chunking — a stricter mask before the average size and a looser one after
// it — so sizes cluster near the average while an insertion moves only the
// boundaries next to it. No kept npm library implements it (npm.tsv has only
// Rabin chunkers), so this is our own. The gear table is derived from a fixed
// seed so every node cuts the same data the same way (dedup across nodes).
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { WasmGear } from './cdc-wasm.js'

export interface CdcParams {
  minSize: number
  avgSize: number
  maxSize: number
}

/** 256 KiB / 1 MiB / 4 MiB: a chunk fits one piece, and a 1 GiB object is about a thousand chunks. */
export const DEFAULT_CDC: CdcParams = { minSize: 256 * 1024, avgSize: 1024 * 1024, maxSize: 4 * 1024 * 1024 }

/** Signed: see cutPoint. */
const GEAR = ((): Int32Array => {
  const g = new Int32Array(256)
  for (let i = 0; i < 256; i++) g[i] = createHash('sha256').update(`bolt-fastcdc-gear-${i}`).digest().readInt32BE(0)
  return g
})()

/** Masks with `bits` one-bits in the high part of the 32-bit hash (its low bits see only the last few bytes). */
function mask (bits: number): number {
  return ((2 ** bits - 1) * 2 ** (32 - bits)) >>> 0
}

export function validateParams (p: CdcParams): void {
  if (!(p.minSize >= 64 && p.minSize < p.avgSize && p.avgSize < p.maxSize)) {
    throw new RangeError(`chunk sizes must satisfy 64 <= min < avg < max, got min=${p.minSize} avg=${p.avgSize} max=${p.maxSize}`)
  }
}

/**
 * Length of the chunk starting at `start` in `buf[start, end)`; `end - start`
 * when no cut point is found and the buffer ends (the caller then knows
 * whether more data follows).
 */
export function cutPoint (buf: Uint8Array, start: number, end: number, p: CdcParams): number {
  const n = end - start
  if (n <= p.minSize) return n
  const limit = Math.min(n, p.maxSize)
  const normal = Math.min(limit, p.avgSize)
  const bits = Math.round(Math.log2(p.avgSize))
  // The hash kept as a signed 32-bit integer (`| 0`), not an unsigned one
  // (`>>> 0`): the same bits, but V8 keeps it in a register instead of
  // falling back to doubles once it passes 2^31.
  const maskS = mask(bits + 2) | 0
  const maskL = mask(bits - 2) | 0
  if (wasm !== undefined && buf.buffer === wasm.buffer) {
    const at = buf.byteOffset + start
    return wasm.cut(at + p.minSize, at + normal, at + limit, maskS, maskL) - at
  }
  let h = 0
  let i = start + p.minSize
  const normalEnd = start + normal
  const limitEnd = start + limit
  for (; i < normalEnd; i++) {
    h = ((h << 1) + (GEAR[buf[i] as number] as number)) | 0
    if ((h & maskS) === 0) return i + 1 - start
  }
  for (; i < limitEnd; i++) {
    h = ((h << 1) + (GEAR[buf[i] as number] as number)) | 0
    if ((h & maskL) === 0) return i + 1 - start
  }
  return limit
}

/** Chunks of an in-memory buffer. */
export function chunkBuffer (buf: Uint8Array, p: CdcParams = DEFAULT_CDC): Uint8Array[] {
  validateParams(p)
  const out: Uint8Array[] = []
  let pos = 0
  while (pos < buf.length) {
    const len = cutPoint(buf, pos, buf.length, p)
    out.push(buf.subarray(pos, pos + len))
    pos += len
  }
  return out
}

/** Chunks of a file, read in windows of a few max sizes; each chunk is a fresh copy. */
export async function * chunkFile (path: string, p: CdcParams = DEFAULT_CDC): AsyncGenerator<Uint8Array> {
  validateParams(p)
  const fh = await open(path, 'r')
  try {
    const window = new Uint8Array(p.maxSize * 4)
    let filled = 0
    let eof = false
    let pos = 0
    for (;;) {
      if (!eof && filled - pos < p.maxSize) {
        window.copyWithin(0, pos, filled)
        filled -= pos
        pos = 0
        while (filled < window.length) {
          const { bytesRead } = await fh.read(window, filled, window.length - filled, null)
          if (bytesRead === 0) { eof = true; break }
          filled += bytesRead
        }
      }
      if (pos >= filled) return
      const len = cutPoint(window, pos, filled, p)
      yield window.slice(pos, pos + len)
      pos += len
    }
  } finally {
    await fh.close()
  }
}

/** Chunking windows kept for reuse once their stream is done, besides those in WebAssembly memory. */
export const MAX_SPARE_WINDOWS = 4
const spareWindows: Uint8Array[] = []
let wasm: WasmGear | undefined
let wasmTried = false

/**
 * A chunking window of `bytes` for CdcWindow: one in the WebAssembly
 * module's memory while one is free (cut there, cdc-wasm.ts), else a spare
 * or a new buffer. Give it back with `giveWindow` when the stream is done.
 */
export function takeWindow (bytes: number): Uint8Array {
  if (!wasmTried) { wasmTried = true; wasm = WasmGear.create(GEAR) }
  const w = wasm?.take(bytes)
  if (w !== undefined) return w
  const i = spareWindows.findIndex(b => b.length === bytes)
  return i >= 0 ? spareWindows.splice(i, 1)[0]! : new Uint8Array(bytes)
}

export function giveWindow (buf: Uint8Array): void {
  if (wasm?.give(buf) === true) return
  if (spareWindows.length < MAX_SPARE_WINDOWS && !spareWindows.includes(buf)) spareWindows.push(buf)
}

/**
 * The chunking window of a byte stream (2 x the largest chunk), driven by
 * its caller: `fill` copies bytes in, and once it is `full`, `next(false)`
 * hands out the chunks that have a whole largest chunk of bytes after their
 * start (so their cut is final), then slides the rest down to make room;
 * at the end, `next(true)` hands out the rest. The cuts are chunkFile's for
 * the same bytes. A chunk is a view into the window, valid until the next
 * call: copy it or finish with it first. No allocation per byte or chunk,
 * so a push-driven writer (an HTTP body's 'data' events) and the
 * pull-driven chunkStream share it.
 */
export class CdcWindow {
  private readonly window: Uint8Array
  private filled = 0
  private pos = 0

  /** `buffer`: a caller's, reused across streams (no 8 MiB allocation per stream for the allocator to fragment). */
  constructor (private readonly p: CdcParams = DEFAULT_CDC, buffer?: Uint8Array) {
    validateParams(p)
    this.window = buffer !== undefined && buffer.length >= p.maxSize * 2 ? buffer.subarray(0, p.maxSize * 2) : new Uint8Array(p.maxSize * 2)
  }

  get full (): boolean { return this.filled === this.window.length }

  /** Copies `piece` from `off` until the window is full; returns where it stopped. */
  fill (piece: Uint8Array, off: number): number {
    const n = Math.min(piece.length - off, this.window.length - this.filled)
    if (n <= 0) return off
    this.window.set(n === piece.length ? piece : piece.subarray(off, off + n), this.filled)
    this.filled += n
    return off + n
  }

  /** The next chunk; undefined when none is ready (not final: the window has slid, room is free). */
  next (final: boolean): Uint8Array | undefined {
    const ahead = this.filled - this.pos
    if (ahead === 0 || (!final && ahead < this.p.maxSize)) {
      if (!final && this.pos > 0) {
        this.window.copyWithin(0, this.pos, this.filled)
        this.filled -= this.pos
        this.pos = 0
      }
      return undefined
    }
    const len = cutPoint(this.window, this.pos, this.filled, this.p)
    const c = this.window.subarray(this.pos, this.pos + len)
    this.pos += len
    return c
  }
}

/**
 * Chunks of a byte stream, cut exactly where chunkFile would cut the same
 * bytes. Each chunk is a view into one window (CdcWindow), valid only until
 * the next one is asked for: copy it or finish with it first. Memory stays
 * at the window whatever the stream's length.
 */
export async function * chunkStream (source: AsyncIterable<Uint8Array>, p: CdcParams = DEFAULT_CDC, buffer?: Uint8Array): AsyncGenerator<Uint8Array> {
  const w = new CdcWindow(p, buffer)
  for await (const piece of source) {
    let off = 0
    while (off < piece.length) {
      if (w.full) for (let c = w.next(false); c !== undefined; c = w.next(false)) yield c
      off = w.fill(piece, off)
    }
  }
  for (let c = w.next(true); c !== undefined; c = w.next(true)) yield c
}
