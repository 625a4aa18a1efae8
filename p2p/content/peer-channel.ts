// One `/bolt/pieces/1` stream to one peer, used for pipelined requests:
// requests are written as they come, responses are read strictly in order.
// Any error (timeout, malformed frame, closed stream) breaks the channel and
// fails every request still waiting on it.
import type { Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { InvalidMessageError } from './errors.js'
import type { ChunkList } from './pieces.js'
import { decodeResponse, encodeRequest, MAX_FRAME, type PieceRequest, type PieceResponse } from './piece-messages.js'

export class ChannelClosedError extends Error {
  override name = 'ChannelClosedError'
}

export class RequestTimeoutError extends Error {
  override name = 'RequestTimeoutError'
}

export class PeerChannel {
  private readonly lp: LengthPrefixedStream<Stream>
  private readChain: Promise<unknown> = Promise.resolve()
  private writeChain: Promise<unknown> = Promise.resolve()
  private broken: Error | undefined
  private readonly closer = new AbortController()

  /**
   * `maxBufferBytes` bounds what may sit unread on the stream: the reader
   * does not pause the stream, so every pipelined response can arrive before
   * it is read (requests in flight × piece size, plus a control frame).
   */
  constructor (readonly peer: string, private readonly stream: Stream, private readonly timeoutMs: number, maxBufferBytes: number) {
    this.lp = lpStream(stream, { maxDataLength: MAX_FRAME, maxBufferSize: maxBufferBytes })
  }

  get isBroken (): boolean { return this.broken !== undefined }

  /** Sends `req`; resolves with its response and, for a piece, the piece bytes. */
  async request (req: PieceRequest, signal?: AbortSignal): Promise<{ res: PieceResponse, data?: ChunkList }> {
    if (this.broken !== undefined) throw this.broken
    const frame = encodeRequest(req)
    const write = this.writeChain.then(async () => {
      if (this.broken !== undefined) throw this.broken
      await this.lp.write(frame)
    })
    this.writeChain = write.catch(() => {})
    const read = this.readChain.then(async () => {
      await write
      if (this.broken !== undefined) throw this.broken
      signal?.throwIfAborted()
      // The answer at the head of the line has timeoutMs; on expiry, or when
      // the caller's signal aborts, the channel breaks, which fails this read
      // and every one behind it. (A timeout signal per request, joined with
      // AbortSignal.any, was about a tenth of the main threads' samples in a
      // fan-out's CPU profile: each fired long after its answer, and built a
      // DOMException to say so.)
      const timer = setTimeout(() => { this.break(new RequestTimeoutError(`no answer from ${this.peer} in ${this.timeoutMs} ms`)) }, this.timeoutMs)
      const onAbort = (): void => { this.break(signal?.reason instanceof Error ? signal.reason : new ChannelClosedError('aborted')) }
      signal?.addEventListener('abort', onAbort)
      try {
        const res = decodeResponse((await this.lp.read({ signal: this.closer.signal })).subarray())
        if (res.t !== 'piece') return { res }
        // The piece stays a list of the chunks it arrived in: the one copy is made where it is stored.
        const data = await this.lp.read({ signal: this.closer.signal })
        if (data.byteLength !== res.length) throw new InvalidMessageError(`piece ${res.index}: header says ${res.length} bytes, frame has ${data.byteLength}`)
        return { res, data }
      } finally {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
    })
    this.readChain = read.catch(() => {})
    try {
      return await read
    } catch (err) {
      this.break(err as Error)
      throw err
    }
  }

  private break (err: Error): void {
    if (this.broken !== undefined) return
    this.broken = new ChannelClosedError(`channel to ${this.peer} broke: ${err.message}`, { cause: err })
    this.closer.abort(this.broken)
    this.stream.abort(this.broken)
  }

  close (): void {
    if (this.broken !== undefined) return
    this.broken = new ChannelClosedError(`channel to ${this.peer} closed`)
    this.closer.abort(this.broken)
    this.stream.close().catch(() => { this.stream.abort(this.broken as Error) })
  }

  abort (): void {
    this.break(new ChannelClosedError('aborted'))
  }
}
