// Socket reads into one reused buffer on the TCP connections an agent dials.
// Node reads each chunk of a socket into a new 64 KiB buffer, and on the VMs
// we measured, fresh memory is the dear part of receiving: a page touched
// for the first time costs 10-15 µs, and a socket read into a reused buffer
// took 0.45 CPU-ms per MiB against 1.3 for the 'data' event's new buffers
// (docs/performance.md). With `onread` (net.connect's option) the kernel
// copies into one warm buffer instead; every read is done with before the
// next one starts (one JS thread, libuv reads a socket and runs our callback
// in one go), so one buffer serves every socket.
//
// The bytes are lent, not given: they may be read only until the callback
// returns. They go to Noise as views only once the connection is encrypted
// and Noise's message decoder has been swapped for NoiseMessageDecoder below,
// which decrypts whole messages straight from the view and copies only a
// message's partial tail into a buffer of its own; anything else (the
// handshake, a paused or buffering connection, a second listener) gets a
// copy, as before. Accepted sockets cannot take `onread` (net.Server has no
// such option): their reads are unchanged.
import { Socket } from 'node:net'
import { Uint8ArrayList } from 'uint8arraylist'
import type { ConnectionEncrypter, MultiaddrConnection, SecuredConnection } from '@libp2p/interface'

/** The read buffer: bigger than one Noise message (65,537 bytes with its length) so most arrive whole. */
export const READ_BUFFER_BYTES = 256 * 1024
/** A Noise transport message: 2-byte big-endian length, then at most 65,535 bytes. */
const MAX_NOISE_MESSAGE = 65535

/** Read counters (for tests and profiles): bytes lent as views and bytes copied. */
export const lentReadStats = { lent: 0, copied: 0 }

/**
 * Noise's transport-message framing (2-byte length, then the message), for a
 * receiver that is done with each message before asking for the next: a
 * message that arrived in one chunk is yielded as a view of that chunk; one
 * split across chunks is gathered in this decoder's own buffer, reused for
 * the next. Replaces the library's LengthPrefixedDecoder, which kept every
 * chunk until its messages were read and so could not be handed a lent buffer.
 */
export class NoiseMessageDecoder {
  private readonly partial = new Uint8Array(2 + MAX_NOISE_MESSAGE)
  private have = 0
  private decoding = false
  /** Chunks that arrived while a decode was running (copies), read by that decode when it is done with its own. */
  private readonly queued: Uint8Array[] = []

  /** Bytes held of a message not yet complete. */
  get pendingBytes (): number { return this.have }

  /** Adopts bytes an earlier decoder had not yet framed (copied). */
  constructor (leftover?: Pick<Uint8ArrayList, 'byteLength' | 'subarray'>) {
    if (leftover !== undefined && leftover.byteLength > 0) this.queued.push(leftover.subarray().slice())
  }

  /**
   * Yields each complete message in order. A yielded message may be read only
   * until the next one is asked for; the chunks given may be read only
   * during this call.
   */
  * decode (data: Uint8Array | Uint8ArrayList): Generator<Uint8ArrayList> {
    if (this.decoding) {
      // Called again from inside a receiver of ours: keep the order by
      // leaving these bytes to the decode that is running.
      for (const chunk of data instanceof Uint8Array ? [data] : data) this.queued.push(chunk.slice())
      return
    }
    this.decoding = true
    try {
      while (this.queued.length > 0) yield * this.decodeChunk(this.queued.shift() as Uint8Array)
      for (const chunk of data instanceof Uint8Array ? [data] : data) {
        yield * this.decodeChunk(chunk)
        while (this.queued.length > 0) yield * this.decodeChunk(this.queued.shift() as Uint8Array)
      }
    } finally {
      this.decoding = false
    }
  }

  private * decodeChunk (chunk: Uint8Array): Generator<Uint8ArrayList> {
    let off = 0
    while (off < chunk.byteLength) {
      if (this.have === 0 && chunk.byteLength - off >= 2) {
        const len = ((chunk[off] as number) << 8) | (chunk[off + 1] as number)
        if (chunk.byteLength - off - 2 >= len) {
          const msg = chunk.subarray(off + 2, off + 2 + len)
          off += 2 + len
          if (len > 0) yield new Uint8ArrayList(msg)
          continue
        }
      }
      // Gather: the length first, then the rest of the message.
      const want = this.have < 2 ? 2 - this.have : 2 + this.messageLength() - this.have
      const n = Math.min(want, chunk.byteLength - off)
      this.partial.set(chunk.subarray(off, off + n), this.have)
      this.have += n
      off += n
      if (this.have >= 2 && this.have === 2 + this.messageLength()) {
        const len = this.messageLength()
        this.have = 0
        if (len > 0) yield new Uint8ArrayList(this.partial.subarray(2, 2 + len))
      }
    }
  }

  private messageLength (): number {
    return ((this.partial[0] as number) << 8) | (this.partial[1] as number)
  }
}

/** What a socket's reads go to once its connection is encrypted. */
interface Lender {
  maConn: MultiaddrConnection & { readBuffer?: Uint8ArrayList, readStatus?: string }
}

const lenders = new WeakMap<Socket, Lender>()
/** Sockets whose reads come through onSocketRead (those dialed with `onread`). */
const lentSockets = new WeakSet<Socket>()
const sharedReadBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES)

/** Whether the bytes of this read may go up as a view: Noise's decoder is ours and nothing would keep them. */
function canLend (socket: Socket, lender: Lender | undefined): boolean {
  if (lender === undefined) return false
  const { maConn } = lender
  return socket.readableFlowing === true && socket.readableLength === 0 && socket.listenerCount('data') === 1 &&
    maConn.readStatus === 'readable' && maConn.readBuffer?.byteLength === 0 &&
    (maConn as unknown as { listenerCount: (t: string) => number }).listenerCount('message') === 1
}

/**
 * net.Socket `onread` callback (`this` is the socket). Never keeps `buf`
 * past its return. Returns false, which pauses the socket, when a copy
 * could not be taken by a flowing reader (as Node's own reads do).
 */
function onSocketRead (this: Socket, nread: number, buf: Buffer): boolean {
  lentSockets.add(this)
  const bytes = buf.subarray(0, nread)
  if (canLend(this, lenders.get(this))) {
    lentReadStats.lent += nread
    // As Readable does for a flowing stream with nothing buffered.
    this.emit('data', bytes)
    return true
  }
  lentReadStats.copied += nread
  return this.push(Buffer.from(bytes))
}

/** `dialOpts` for @libp2p/tcp: dialed sockets read into the shared buffer. */
export function lentReadDialOptions (): { onread: { buffer: Buffer, callback: (this: Socket, nread: number, buf: Buffer) => boolean } } {
  return { onread: { buffer: sharedReadBuffer, callback: onSocketRead } }
}

/** Swaps Noise's decoder on a connection dialed with lent reads; false (nothing changed) otherwise. */
export function lendReadsToNoise (maConn: MultiaddrConnection, secured: unknown): boolean {
  const socket = (maConn as { socket?: unknown }).socket
  if (!(socket instanceof Socket) || !lentSockets.has(socket)) return false
  // The library's decoder: duck-typed (its Uint8ArrayList may be another copy of the package).
  const stream = secured as { decoder?: { decode?: unknown, buffer?: { byteLength?: unknown, subarray?: unknown } } }
  const old = stream.decoder
  if (typeof old?.decode !== 'function' || typeof old.buffer?.byteLength !== 'number' || typeof old.buffer.subarray !== 'function') return false
  stream.decoder = new NoiseMessageDecoder(old.buffer as unknown as Uint8ArrayList) as unknown as typeof old
  lenders.set(socket, { maConn })
  return true
}

/** Wraps a connection encrypter (Noise) so that connections dialed with lent reads decode from the lent bytes. */
export function withLentReads<C, X> (factory: (components: C) => ConnectionEncrypter<X>): (components: C) => ConnectionEncrypter<X> {
  return (components: C): ConnectionEncrypter<X> => {
    const encrypter = factory(components)
    const secureOutbound = encrypter.secureOutbound.bind(encrypter)
    const secureInbound = encrypter.secureInbound.bind(encrypter)
    encrypter.secureOutbound = async (conn, options): Promise<SecuredConnection<X>> => {
      const secured = await secureOutbound(conn, options)
      lendReadsToNoise(conn as MultiaddrConnection, secured.connection)
      return secured
    }
    encrypter.secureInbound = async (conn, options): Promise<SecuredConnection<X>> => {
      const secured = await secureInbound(conn, options)
      lendReadsToNoise(conn as MultiaddrConnection, secured.connection)
      return secured
    }
    return encrypter
  }
}
