// Buffers the mirror reads a stored blob into from disk, 1 MiB at a time,
// reused from one read to the next instead of allocated per read. (Pieces
// of a blob streamed while it is pulled are piece buffers of the exchange's
// pool instead: p2p/content/piece-buffers.ts.) A buffer goes back to the
// pool when the response's socket has taken its bytes (the write's
// callback), so a response holds only what it has in flight.
//
// Why: a fresh buffer per read is fresh memory, faulted in and zeroed by
// the kernel on the first touch, and it dies only at V8's next full
// collection; zeroing new pages was the largest difference between a first
// pull and a second through the same agents (measured with perf).
import type { FileHandle } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { clientGone, drained, writeThen } from '../api/ndjson.js'
import { SpareBuffers as ReadBuffers } from '../../p2p/content/piece-buffers.js'

export { ReadBuffers }

/** Spare buffers kept per size; more are left to the garbage collector. */
export const SPARE_READ_BUFFERS = 8
/** A stored blob is sent in reads (and socket writes) of this size. */
export const SEND_CHUNK_BYTES = 1024 * 1024

/**
 * Sends `length` bytes of `fh` from `start` as the body of `res` (whose head
 * is written), in SEND_CHUNK_BYTES reads into `pool`'s buffers, and ends it.
 * Stops when the client leaves; throws when the file is shorter than that.
 */
export async function sendFileRange (fh: FileHandle, start: number, length: number, res: ServerResponse, pool: ReadBuffers, onBytes?: (n: number) => void): Promise<void> {
  const end = start + length
  for (let pos = start; pos < end;) {
    if (clientGone(res)) return
    const buf = pool.take(SEND_CHUNK_BYTES)
    let n: number
    try {
      n = (await fh.read(buf, 0, Math.min(SEND_CHUNK_BYTES, end - pos), pos)).bytesRead
    } catch (err) {
      pool.give(buf)
      throw err
    }
    if (n === 0) {
      pool.give(buf)
      throw new Error(`file ends at byte ${pos}, ${end - pos} bytes short`)
    }
    pos += n
    onBytes?.(n)
    // The buffer goes back once the socket took its bytes or never will, so
    // no later read overwrites bytes still waiting to go out.
    if (!writeThen(res, buf.subarray(0, n), () => { pool.give(buf) })) await drained(res)
  }
  res.end()
}
