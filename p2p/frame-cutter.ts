// Cuts the frames of a peer link (p2p/peer-link.ts) from a stream's chunks:
// lpStream's framing (a varint length, then the bytes), read without a
// promise, signal or exception per frame.

export function named (name: string, message: string): Error {
  const e = new Error(message)
  e.name = name
  return e
}

/** Bytes of `n`'s varint (unsigned LEB128). */
function varintBytes (n: number): number {
  let k = 1
  for (let v = n; v >= 0x80; v = Math.floor(v / 0x80)) k++
  return k
}

/** Frames in lpStream's framing (each a varint length, then its bytes), in one buffer: what FrameCutter cuts. */
export function frameAll (frames: readonly Uint8Array[]): Uint8Array {
  let total = 0
  for (const f of frames) total += varintBytes(f.byteLength) + f.byteLength
  const out = Buffer.allocUnsafe(total)
  let off = 0
  for (const f of frames) {
    let v = f.byteLength
    while (v >= 0x80) { out[off++] = (v % 0x80) | 0x80; v = Math.floor(v / 0x80) }
    out[off++] = v
    out.set(f, off)
    off += f.byteLength
  }
  return out
}

/** Reader buffer when PeerLinksInit gives none (lpStream's default). */
export const DEFAULT_READ_BUFFER_BYTES = 4 * 1024 * 1024

/**
 * Cuts varint-length-prefixed frames (lpStream's framing) from chunks as
 * they arrive. Chunks are joined only once a whole frame is there, so a
 * large frame arriving in small reads is copied about twice, not once per
 * read. Errors are named as lpStream's are, for classifyEnd.
 */
export class FrameCutter {
  private chunks: Uint8Array[] = []
  private total = 0
  /** Bytes needed before cutting can progress (0: unknown, try on any data). */
  private need = 0
  private readonly maxLengthBytes: number

  constructor (private readonly maxFrameBytes: number, private readonly maxBufferBytes: number) {
    this.maxLengthBytes = varintBytes(maxFrameBytes)
  }

  /** Adds a chunk; returns the frames it completed (views, not copies: do not write to them). */
  push (chunk: Uint8Array): Uint8Array[] {
    if (chunk.byteLength === 0) return []
    this.chunks.push(chunk)
    this.total += chunk.byteLength
    if (this.total > this.maxBufferBytes) throw named('StreamBufferError', `read buffer overflow: ${this.total} > ${this.maxBufferBytes} bytes`)
    if (this.total < this.need) return []
    const buf = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.total)
    const out: Uint8Array[] = []
    let off = 0
    this.need = 0
    for (;;) {
      // Varint length, little-endian base 128.
      let len = 0
      let mul = 1
      let i = off
      let complete = false
      while (i < buf.byteLength) {
        const b = buf[i++] as number
        len += (b & 0x7f) * mul
        if (b < 0x80) { complete = true; break }
        mul *= 0x80
        if (i - off >= this.maxLengthBytes) throw named('InvalidDataLengthLengthError', `frame length longer than ${this.maxLengthBytes} bytes`)
      }
      if (!complete) break
      if (len > this.maxFrameBytes) throw named('InvalidDataLengthError', `frame of ${len} bytes is above the ${this.maxFrameBytes} byte limit`)
      if (buf.byteLength - i < len) { this.need = i - off + len; break }
      out.push(buf.subarray(i, i + len))
      off = i + len
    }
    const rest = off === 0 ? buf : buf.subarray(off)
    this.chunks = rest.byteLength === 0 ? [] : [rest]
    this.total = rest.byteLength
    return out
  }
}
