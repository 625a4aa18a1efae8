// One `/bolt/pieces/1` stream to one peer, used for pipelined requests:
// requests are written as they come, responses are read strictly in order.
// Any error (timeout, malformed frame, closed stream) breaks the channel and
// fails every request still waiting on it.
//
// Responses are parsed as their bytes arrive, and a piece's bytes are copied
// at once into a buffer of the pool (piece-buffers.ts), so no message the
// stream hands over is kept. A peer can send nothing it was not asked for:
// an answer without a request, a control frame over MAX_CONTROL_FRAME or a
// piece longer than the piece size asked for breaks the channel.
import type { Stream } from '@libp2p/interface'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { InvalidMessageError } from './errors.js'
import type { PieceBuffer, PieceBuffers } from './piece-buffers.js'
import { decodeResponse, encodeRequest, MAX_CONTROL_FRAME, type PieceRequest, type PieceResponse } from './piece-messages.js'

export class ChannelClosedError extends Error {
  override name = 'ChannelClosedError'
}

export class RequestTimeoutError extends Error {
  override name = 'RequestTimeoutError'
}

interface Pending {
  req: PieceRequest
  resolve: (r: { res: PieceResponse, data?: PieceBuffer }) => void
  reject: (err: Error) => void
  signal?: AbortSignal
  onAbort: () => void
}

/** The longest varint a frame length may take (MAX_FRAME fits in four bytes). */
const MAX_VARINT_BYTES = 5

export class PeerChannel {
  private writeChain: Promise<unknown> = Promise.resolve()
  private broken: Error | undefined
  private readonly pending: Pending[] = []
  private timer: NodeJS.Timeout | undefined
  // Parser state: the length of the frame being read (while its varint is read: value so far and bytes seen)…
  private lenValue = 0
  private lenBytes = 0
  private frameLen: number | undefined
  // …a control frame's bytes so far…
  private readonly control = new Uint8ArrayList()
  // …or a piece header whose data frame comes next, and that frame's buffer.
  private header: Extract<PieceResponse, { t: 'piece' }> | undefined
  private body: { piece: PieceBuffer, got: number } | undefined

  /**
   * `onBytes` is told of every chunk that arrives. The answer at the head of
   * the line must start or go on within timeoutMs: any bytes from the peer
   * restart its clock (a busy peer sends slowly; a gone one sends nothing).
   */
  constructor (readonly peer: string, private readonly stream: Stream, private readonly timeoutMs: number, private readonly pool: PieceBuffers, private readonly onBytes?: () => void) {
    stream.addEventListener('message', (evt) => {
      if (this.broken !== undefined) return
      if (this.pending.length > 0) this.timer?.refresh()
      this.onBytes?.()
      try {
        for (const chunk of evt.data instanceof Uint8Array ? [evt.data] : evt.data) this.take(chunk)
      } catch (err) {
        this.break(err as Error)
      }
    })
    stream.addEventListener('close', (evt) => { this.break(evt.error ?? new ChannelClosedError(`stream to ${peer} closed`)) })
    stream.addEventListener('remoteCloseWrite', () => { if (this.pending.length > 0) this.break(new ChannelClosedError(`${peer} closed its side with answers owed`)) })
  }

  get isBroken (): boolean { return this.broken !== undefined }

  /**
   * Sends `req`; resolves with its response and, for a piece, the piece's
   * bytes in a pooled buffer that the caller holds: it calls release() once.
   */
  async request (req: PieceRequest, signal?: AbortSignal): Promise<{ res: PieceResponse, data?: PieceBuffer }> {
    if (this.broken !== undefined) throw this.broken
    signal?.throwIfAborted()
    const answer = new Promise<{ res: PieceResponse, data?: PieceBuffer }>((resolve, reject) => {
      // The caller's signal breaks the channel: the answers behind this one would come late.
      const onAbort = (): void => { this.break(signal?.reason instanceof Error ? signal.reason : new ChannelClosedError('aborted')) }
      this.pending.push({ req, resolve, reject, signal, onAbort })
      signal?.addEventListener('abort', onAbort)
    })
    if (this.pending.length === 1) this.armTimer()
    const frame = encodeRequest(req)
    const write = this.writeChain.then(async () => {
      if (this.broken !== undefined) return
      const out = new Uint8Array(varint.encodingLength(frame.byteLength) + frame.byteLength)
      varint.encode(frame.byteLength, out)
      out.set(frame, out.byteLength - frame.byteLength)
      if (!this.stream.send(out)) await this.stream.onDrain()
    })
    this.writeChain = write.catch((err: Error) => { this.break(err) })
    return await answer
  }

  /**
   * The answer at the head of the line has timeoutMs; on expiry the channel
   * breaks, which fails it and every one behind it. (A timeout signal per
   * request, joined with AbortSignal.any, was about a tenth of the main
   * threads' samples in a fan-out's CPU profile: each fired long after its
   * answer, and built a DOMException to say so.)
   */
  private armTimer (): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { this.break(new RequestTimeoutError(`no answer from ${this.peer} in ${this.timeoutMs} ms`)) }, this.timeoutMs)
  }

  /** Parses `chunk`: frame lengths, control frames, piece bytes straight into their buffer. */
  private take (chunk: Uint8Array): void {
    let off = 0
    while (off < chunk.byteLength) {
      if (this.body !== undefined) {
        const { piece } = this.body
        const n = Math.min(piece.byteLength - this.body.got, chunk.byteLength - off)
        piece.bytes.set(chunk.subarray(off, off + n), this.body.got)
        this.body.got += n
        off += n
        if (this.body.got === piece.byteLength) this.pieceDone()
        continue
      }
      if (this.frameLen === undefined) {
        const b = chunk[off++] as number
        this.lenValue += (b & 0x7f) * 2 ** (7 * this.lenBytes)
        this.lenBytes++
        if ((b & 0x80) !== 0) {
          if (this.lenBytes >= MAX_VARINT_BYTES) throw new InvalidMessageError(`frame length from ${this.peer} is not a valid varint`)
          continue
        }
        this.frameLen = this.lenValue
        this.lenValue = 0
        this.lenBytes = 0
        this.frameStarts()
        continue
      }
      const n = Math.min(this.frameLen - this.control.byteLength, chunk.byteLength - off)
      this.control.append(chunk.subarray(off, off + n))
      off += n
      if (this.control.byteLength === this.frameLen) this.controlDone()
    }
  }

  /** A frame's length is known: a piece's data frame gets its buffer; an empty frame is complete at once. */
  private frameStarts (): void {
    const len = this.frameLen as number
    const header = this.header
    if (header !== undefined) {
      if (len !== header.length) throw new InvalidMessageError(`piece ${header.index}: header says ${header.length} bytes, frame has ${len}`)
      const req = this.pending[0]?.req
      const capacity = req?.t === 'piece?' ? req.pieceSize : len
      if (len > capacity) throw new InvalidMessageError(`piece ${header.index} from ${this.peer} is ${len} bytes, over the ${capacity} asked for`)
      this.body = { piece: this.pool.take(len, capacity), got: 0 }
      if (len === 0) this.pieceDone()
      return
    }
    if (len > MAX_CONTROL_FRAME) throw new InvalidMessageError(`frame of ${len} bytes from ${this.peer} exceeds ${MAX_CONTROL_FRAME}`)
    if (len === 0) this.controlDone()
  }

  private controlDone (): void {
    const res = decodeResponse(this.control.subarray())
    this.control.consume(this.control.byteLength)
    this.frameLen = undefined
    if (res.t === 'piece') {
      if (this.pending[0]?.req.t !== 'piece?') throw new InvalidMessageError(`${this.peer} sent a piece nobody asked for`)
      this.header = res
      return
    }
    this.deliver(res, undefined)
  }

  private pieceDone (): void {
    const { piece } = this.body as { piece: PieceBuffer }
    const res = this.header as PieceResponse
    this.body = undefined
    this.header = undefined
    this.frameLen = undefined
    this.deliver(res, piece)
  }

  private deliver (res: PieceResponse, data: PieceBuffer | undefined): void {
    const p = this.pending.shift()
    if (p === undefined) {
      data?.release()
      throw new InvalidMessageError(`${this.peer} answered a request never made`)
    }
    p.signal?.removeEventListener('abort', p.onAbort)
    if (this.pending.length > 0) this.armTimer()
    else clearTimeout(this.timer)
    p.resolve(data !== undefined ? { res, data } : { res })
  }

  private break (err: Error): void {
    if (this.broken !== undefined) return
    this.broken = new ChannelClosedError(`channel to ${this.peer} broke: ${err.message}`, { cause: err })
    this.fail(this.broken)
    this.stream.abort(this.broken)
  }

  /** Fails every waiting request with `err` and gives back a piece half read. */
  private fail (err: Error): void {
    clearTimeout(this.timer)
    this.body?.piece.release()
    this.body = undefined
    for (const p of this.pending.splice(0)) {
      p.signal?.removeEventListener('abort', p.onAbort)
      p.reject(err)
    }
  }

  close (): void {
    if (this.broken !== undefined) return
    this.broken = new ChannelClosedError(`channel to ${this.peer} closed`)
    this.fail(this.broken)
    this.stream.close().catch(() => { this.stream.abort(this.broken as Error) })
  }

  abort (): void {
    this.break(new ChannelClosedError('aborted'))
  }
}
