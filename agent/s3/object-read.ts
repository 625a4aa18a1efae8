// Reading an object's bytes for GetObject and UploadPartCopy: each chunk
// file is read piece by piece (GET_PIECE_BYTES) into buffers the caller
// hands over, never whole. A GET response owns GET_BUFFERS_PER_RESPONSE of
// them; a buffer goes back to the response once the socket has taken its
// bytes (the write's callback), so a slow client holds the next read, and
// memory per response stays at those buffers whatever the object's or the
// chunk's size. The buffers are reused across responses: reading allocates
// nothing for the garbage collector to find later.
import type { Writable } from 'node:stream'
import type { ObjectManifest, ObjectStore } from '../../p2p/content/objects.js'

export const GET_PIECE_BYTES = 512 * 1024
export const GET_BUFFERS_PER_RESPONSE = 2
/** Buffers of finished responses kept for the next ones. */
export const MAX_SPARE_PIECE_BUFFERS = 32

const spare: Buffer[] = []

type ChunkReader = Pick<ObjectStore, 'openChunk'>

/**
 * The bytes [start, start + length) of `manifest`'s object, one piece at a
 * time, each read into a buffer from `take`: a piece is a view of it, the
 * caller's to reuse once it has asked for the next piece (or given it back).
 */
export async function * readPieces (objects: ChunkReader, manifest: ObjectManifest, start: number, length: number, take: () => Promise<Buffer>): AsyncGenerator<Buffer> {
  const end = start + length
  let pos = 0
  for (const c of manifest.chunks) {
    const cEnd = pos + c.size
    if (cEnd > start && pos < end) {
      const fh = await objects.openChunk(c.digest)
      try {
        let off = Math.max(0, start - pos)
        const stop = Math.min(c.size, end - pos)
        while (off < stop) {
          const buf = await take()
          const n = Math.min(buf.length, stop - off)
          let got = 0
          while (got < n) {
            const { bytesRead } = await fh.read(buf, got, n - got, off + got)
            if (bytesRead === 0) throw new Error(`chunk ${c.digest} is shorter than its manifest's ${c.size} bytes`)
            got += bytesRead
          }
          off += n
          yield buf.subarray(0, n)
        }
      } finally {
        await fh.close()
      }
    }
    pos = cEnd
    if (pos >= end) break
  }
}

/** A response's piece buffers: taken to read into, given back when the socket is done with them. */
class PieceBuffers {
  private readonly free: Buffer[] = []
  private wake: (() => void) | undefined
  private failure: Error | undefined
  private done = false

  constructor (count: number) {
    for (let i = 0; i < count; i++) this.free.push(spare.pop() ?? Buffer.allocUnsafe(GET_PIECE_BYTES))
  }

  async take (signal: AbortSignal): Promise<Buffer> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      signal.throwIfAborted()
      const b = this.free.pop()
      if (b !== undefined) return b
      await new Promise<void>(resolve => {
        const onAbort = (): void => { resolve() }
        signal.addEventListener('abort', onAbort, { once: true })
        this.wake = () => { signal.removeEventListener('abort', onAbort); resolve() }
      })
      this.wake = undefined
    }
  }

  /** The socket wrote `b` (or failed to: then the response is over and `b` is dropped). */
  give (b: Buffer, err: Error | null | undefined): void {
    if (err != null) this.failure ??= err
    else if (this.done) keep(b)
    else this.free.push(b)
    this.wake?.()
  }

  /** The response is over: free buffers go to the spares now, those still being written when their write ends. */
  close (): void {
    this.done = true
    for (const b of this.free.splice(0)) keep(b)
  }
}

function keep (b: Buffer): void {
  if (spare.length < MAX_SPARE_PIECE_BUFFERS) spare.push(b)
}

/** Writes the object's bytes [start, start + length) to `out`, `counted` told of each piece. */
export async function sendRange (objects: ChunkReader, manifest: ObjectManifest, start: number, length: number, out: Writable, signal: AbortSignal, counted: (bytes: number) => void): Promise<void> {
  const bufs = new PieceBuffers(GET_BUFFERS_PER_RESPONSE)
  let current: Buffer | undefined
  const take = async (): Promise<Buffer> => { current = await bufs.take(signal); return current }
  try {
    for await (const piece of readPieces(objects, manifest, start, length, take)) {
      counted(piece.length)
      const whole = current!
      out.write(piece, err => { bufs.give(whole, err) })
    }
  } finally {
    bufs.close()
  }
}

/** One piece buffer for a reader that finishes with each piece before asking for the next (UploadPartCopy staging). */
export async function * readRange (objects: ChunkReader, manifest: ObjectManifest, start: number, length: number): AsyncIterable<Buffer> {
  const buf = spare.pop() ?? Buffer.allocUnsafe(GET_PIECE_BYTES)
  try {
    yield * readPieces(objects, manifest, start, length, async () => buf)
  } finally {
    keep(buf)
  }
}
