// Piece-sized buffers reused from one piece to the next, with a count of
// who still reads each. A piece received from a peer is copied into one as
// its bytes arrive; the recent-piece cache and every send of it hold a
// reference; the last release gives the buffer back for the next piece.
//
// Why: Node hands each decrypted message to the stream as a new buffer. Kept
// until its piece was complete and then in the recent-piece cache, those
// buffers lived for seconds under load, long enough to reach V8's old
// generation, so they were freed only by a full collection. An agent's RSS
// grew by about 440 MB in a first fan-out, and on this VM each new page
// costs 10-15 µs at its first touch (the README's benchmark notes). Copied at
// once into a reused buffer, each message dies young.

/** A piece's bytes in a buffer that goes back to its pool when the last holder releases it. */
export class PieceBuffer {
  private refs = 1

  /** `bytes` is a view of `buf` (the piece may be shorter than the buffer). */
  constructor (readonly bytes: Uint8Array, private readonly buf: Uint8Array, private readonly pool: PieceBuffers | undefined) {}

  /** Bytes that no pool owns: releasing them does nothing but count. */
  static unpooled (bytes: Uint8Array): PieceBuffer {
    return new PieceBuffer(bytes, bytes, undefined)
  }

  get byteLength (): number { return this.bytes.byteLength }

  get released (): boolean { return this.refs === 0 }

  /** One more holder; it must call release() once. */
  retain (): this {
    if (this.refs === 0) throw new Error('piece buffer retained after its last release')
    this.refs++
    return this
  }

  release (): void {
    if (this.refs === 0) throw new Error('piece buffer released more often than retained')
    if (--this.refs === 0) this.pool?.give(this.buf)
  }
}

/** Spare buffers kept for reuse, per size: enough for the pieces of a busy fan-out. */
export const SPARE_PIECE_BUFFERS = 48
/** Spares go when no piece buffer was taken for this long. */
export const SPARE_IDLE_MS = 10_000

/**
 * Spare buffers by size: `take` reuses one given back, else allocates. Not
 * zero-filled: whoever takes a buffer writes every byte it later reads.
 */
export class SpareBuffers {
  private readonly spares = new Map<number, Uint8Array[]>()
  /** Buffers made because no spare was there (read by tests). */
  made = 0

  constructor (readonly maxSpares: number) {}

  /** A buffer of exactly `bytes` bytes, with unspecified contents. */
  take (bytes: number): Uint8Array {
    const spare = this.spares.get(bytes)?.pop()
    if (spare !== undefined) return spare
    this.made++
    const raw = Buffer.allocUnsafeSlow(bytes)
    return new Uint8Array(raw.buffer, raw.byteOffset, bytes)
  }

  /** Gives `buf` (as taken) back; kept for the next `take` of its size while fewer than `maxSpares` are. */
  give (buf: Uint8Array): void {
    let list = this.spares.get(buf.byteLength)
    if (list === undefined) { list = []; this.spares.set(buf.byteLength, list) }
    if (list.length < this.maxSpares && !list.includes(buf)) list.push(buf)
  }

  /** Lets every spare go. */
  clear (): void {
    this.spares.clear()
  }

  /** Spare buffers kept now. */
  spareCount (): number {
    let n = 0
    for (const list of this.spares.values()) n += list.length
    return n
  }
}

/**
 * Reused buffers for whole pieces, one pool per piece exchange (the
 * exchange owns it and hands it to its server, channels and pulls).
 */
export class PieceBuffers {
  private readonly spares: SpareBuffers
  private lastTake = 0

  constructor (maxSpares = SPARE_PIECE_BUFFERS, private readonly now: () => number = Date.now) {
    this.spares = new SpareBuffers(maxSpares)
  }

  /** Buffers allocated so far (for tests). */
  get made (): number { return this.spares.made }

  /** A buffer of `capacity` bytes (at least `length`), viewed as `length` bytes, with one holder: the caller. */
  take (length: number, capacity = length): PieceBuffer {
    if (length > capacity) throw new RangeError(`a piece of ${length} bytes does not fit a buffer of ${capacity}`)
    this.lastTake = this.now()
    const buf = this.spares.take(capacity)
    return new PieceBuffer(buf.subarray(0, length), buf, this)
  }

  /** @internal PieceBuffer.release gives its buffer back here. */
  give (buf: Uint8Array): void {
    this.spares.give(buf)
  }

  /** Lets every spare go when no buffer was taken for `idleMs` (0: now), so an idle node holds none. */
  trim (idleMs = 0): void {
    if (this.now() - this.lastTake >= idleMs) this.spares.clear()
  }

  spareCount (): number {
    return this.spares.spareCount()
  }
}

