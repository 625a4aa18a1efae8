// The `aws-chunked` content encoding of SigV4 streaming uploads: the body is
// `HEX[;chunk-signature=SIG]\r\n DATA\r\n` chunks, a zero-length last chunk,
// then optional trailers (`x-amz-checksum-crc32:…`, and for signed trailers
// `x-amz-trailer-signature:…`) and an empty line. Signed chunks chain their
// signatures from the request's seed signature; each is checked when its
// chunk ends. The decoder never holds more than one header line (bounded)
// and passes data through as it arrives: callers store nothing until the
// whole body has been decoded and checked.
import { createHash, createHmac } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'
import { s3err } from './errors.js'
import { EMPTY_SHA256, sameSignature } from './sigv4.js'

/** Longest chunk header or trailer line. */
export const MAX_LINE_BYTES = 4096
/** Largest chunk accepted (clients send 64 KiB to 8 MiB). */
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024
export const MAX_TRAILERS = 8

export interface ChunkSigning {
  key: Uint8Array
  amzDate: string
  scope: string
  /** The request's own signature: the first chunk's "previous" one. */
  seed: string
}

export interface AwsChunkedInit {
  /** Set: every chunk carries a chunk-signature, checked with this. Absent: STREAMING-UNSIGNED-PAYLOAD-TRAILER. */
  signing?: ChunkSigning
  /** Trailer header names announced in x-amz-trailer (lower case). */
  trailers: string[]
}

type State = 'header' | 'data' | 'data-crlf' | 'trailer' | 'done'

/** The decoder's core, without streams: push bytes, get data slices; end() checks the body is complete. */
export class AwsChunkedDecoder {
  private state: State = 'header'
  private line = Buffer.alloc(0)
  private remaining = 0
  private chunkHash = createHash('sha256')
  private chunkSig = ''
  private prevSig: string
  readonly trailers = new Map<string, string>()
  decodedBytes = 0

  constructor (private readonly init: AwsChunkedInit) {
    this.prevSig = init.signing?.seed ?? ''
  }

  push (buf: Buffer): Buffer[] {
    const out: Buffer[] = []
    let pos = 0
    while (pos < buf.length) {
      if (this.state === 'done') throw s3err.invalidRequest('aws-chunked body: bytes after the end of the body')
      if (this.state === 'data') {
        const n = Math.min(this.remaining, buf.length - pos)
        const slice = buf.subarray(pos, pos + n)
        if (this.init.signing !== undefined) this.chunkHash.update(slice)
        out.push(slice)
        this.decodedBytes += n
        this.remaining -= n
        pos += n
        if (this.remaining === 0) this.state = 'data-crlf'
        continue
      }
      // A line: header, CRLF after data, or trailer.
      const nl = buf.indexOf(0x0a, pos)
      const end = nl < 0 ? buf.length : nl + 1
      if (this.line.length + (end - pos) > MAX_LINE_BYTES) throw s3err.invalidRequest('aws-chunked body: a chunk header or trailer line is too long')
      this.line = Buffer.concat([this.line, buf.subarray(pos, end)])
      pos = end
      if (nl < 0) break
      const text = this.line.toString('latin1')
      this.line = Buffer.alloc(0)
      if (!text.endsWith('\r\n')) throw s3err.invalidRequest('aws-chunked body: a line does not end with CRLF')
      this.onLine(text.slice(0, -2))
    }
    return out
  }

  private onLine (text: string): void {
    switch (this.state) {
      case 'data-crlf':
        if (text !== '') throw s3err.invalidRequest('aws-chunked body: chunk data longer than its declared size')
        this.finishChunk()
        this.state = 'header'
        return
      case 'header': {
        const m = /^([0-9a-fA-F]{1,8})(?:;chunk-signature=([0-9a-f]{64}))?$/.exec(text)
        if (m === null) throw s3err.invalidRequest('aws-chunked body: a chunk header is not HEX[;chunk-signature=SIG]')
        const size = parseInt(m[1]!, 16)
        if (size > MAX_CHUNK_BYTES) throw s3err.invalidRequest(`aws-chunked body: a chunk of ${size} bytes is above ${MAX_CHUNK_BYTES}`)
        if (this.init.signing !== undefined && m[2] === undefined) throw s3err.signatureMismatch()
        this.chunkSig = m[2] ?? ''
        this.chunkHash = createHash('sha256')
        if (size === 0) {
          this.finishChunk()
          this.state = 'trailer'
        } else {
          this.remaining = size
          this.state = 'data'
        }
        return
      }
      case 'trailer': {
        if (text === '') { this.finishTrailers(); return }
        const colon = text.indexOf(':')
        if (colon <= 0) throw s3err.invalidRequest('aws-chunked body: a trailer is not NAME:VALUE')
        const name = text.slice(0, colon).trim().toLowerCase()
        if (this.trailers.size >= MAX_TRAILERS || this.trailers.has(name)) throw s3err.invalidRequest('aws-chunked body: too many or repeated trailers')
        this.trailers.set(name, text.slice(colon + 1).trim())
        return
      }
      default: throw s3err.invalidRequest('aws-chunked body: unexpected line')
    }
  }

  private finishChunk (): void {
    const s = this.init.signing
    if (s === undefined) return
    const sts = ['AWS4-HMAC-SHA256-PAYLOAD', s.amzDate, s.scope, this.prevSig, EMPTY_SHA256, this.chunkHash.digest('hex')].join('\n')
    const want = createHmac('sha256', s.key).update(sts).digest('hex')
    if (!sameSignature(want, this.chunkSig)) throw s3err.signatureMismatch()
    this.prevSig = want
  }

  private finishTrailers (): void {
    const s = this.init.signing
    const sig = this.trailers.get('x-amz-trailer-signature')
    this.trailers.delete('x-amz-trailer-signature')
    for (const name of this.trailers.keys()) {
      if (!this.init.trailers.includes(name)) throw s3err.invalidRequest(`aws-chunked body: trailer ${name.slice(0, 64)} was not announced in x-amz-trailer`)
    }
    if (s !== undefined && this.trailers.size > 0) {
      if (sig === undefined) throw s3err.signatureMismatch()
      const body = [...this.trailers].map(([k, v]) => `${k}:${v}\n`).join('')
      const sts = ['AWS4-HMAC-SHA256-TRAILER', s.amzDate, s.scope, this.prevSig, createHash('sha256').update(body).digest('hex')].join('\n')
      if (!sameSignature(createHmac('sha256', s.key).update(sts).digest('hex'), sig)) throw s3err.signatureMismatch()
    }
    this.state = 'done'
  }

  /** The body ended: it must have ended after the last chunk (and its trailers). */
  end (): void {
    if (this.state === 'trailer' && this.line.length === 0) this.finishTrailers()
    if (this.state !== 'done') throw s3err.incompleteBody()
    for (const name of this.init.trailers) {
      if (!this.trailers.has(name)) throw s3err.invalidRequest(`aws-chunked body: the announced trailer ${name} is missing`)
    }
  }
}

/** The decoder as a Transform: encoded body in, object bytes out. */
export class AwsChunkedStream extends Transform {
  readonly decoder: AwsChunkedDecoder
  constructor (init: AwsChunkedInit) {
    super()
    this.decoder = new AwsChunkedDecoder(init)
  }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      for (const b of this.decoder.push(chunk)) this.push(b)
      cb()
    } catch (err) { cb(err as Error) }
  }

  override _flush (cb: TransformCallback): void {
    try { this.decoder.end(); cb() } catch (err) { cb(err as Error) }
  }
}
