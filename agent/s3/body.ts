// Receiving an object's bytes: the request body, decoded when aws-chunked,
// is cut into FastCDC chunks straight from the stream and staged in the
// object store (written, not fsync'd, invisible) while MD5 (the ETag), the
// payload's SHA-256 (when the signature covers it) and any checksum the
// client named (CRC32, CRC32C, SHA1, SHA256; header or trailer) are
// computed. Only a body that matches all of them is handed on to be
// committed; anything else has its staged chunks deleted and is answered
// with S3's error code. Memory stays bounded by one chunking window and the
// stream's buffers whatever the object's size.
import type { IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'
import type { StagedObject, StageWriter } from '../../p2p/content/objects.js'
import { bodySums, type BodySums } from './body-hasher.js'
import { AwsChunkedStream, type ChunkSigning } from './aws-chunked.js'
import { S3Error, s3err } from './errors.js'
import { bodyGcPacer } from './gc-pacer.js'
import { STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, UNSIGNED_PAYLOAD } from './sigv4.js'

export const CHECKSUM_ALGORITHMS = ['crc32', 'crc32c', 'sha1', 'sha256'] as const
export type ChecksumAlgorithm = typeof CHECKSUM_ALGORITHMS[number]

/** Writes a body's bytes somewhere invisible (ObjectStore.stageObject/stageWriter) and deletes them again. */
export interface BodyStager {
  stage: (source: AsyncIterable<Uint8Array>, signal?: AbortSignal) => Promise<StagedObject>
  writer: () => StageWriter
  discard: (staged: StagedObject) => Promise<void>
}

export interface ReceivedBody {
  /** The body's chunks, staged: not yet durable nor visible. */
  staged: StagedObject
  size: number
  md5: string
  /** Checksums verified against what the client sent (algorithm → base64). */
  checksums: Record<string, string>
}

function header (req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * Reads the body of `req` into chunks staged by `stager`. `payloadHash` is
 * the x-amz-content-sha256 the signature covers; `signing` checks aws-chunked
 * chunk signatures. Throws S3Error (the staged chunks deleted) on any mismatch.
 */
export async function receiveBody (req: IncomingMessage, o: { stager: BodyStager, payloadHash: string, signing?: ChunkSigning, maxBytes: number, signal?: AbortSignal }): Promise<ReceivedBody> {
  const streaming = o.payloadHash.startsWith('STREAMING-')
  if (streaming && ![STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER].includes(o.payloadHash)) throw s3err.notImplemented(`x-amz-content-sha256 ${o.payloadHash.slice(0, 64)}`)
  const declared = header(req, 'x-amz-decoded-content-length') ?? header(req, 'content-length')
  if (declared !== undefined && !/^\d{1,15}$/.test(declared)) throw s3err.invalidArgument('Content-Length is not a number')
  if (declared !== undefined && Number(declared) > o.maxBytes) throw s3err.entityTooLarge(o.maxBytes)
  if (streaming && header(req, 'x-amz-decoded-content-length') === undefined) throw new S3Error(411, 'MissingContentLength', 'aws-chunked uploads need x-amz-decoded-content-length')
  const trailerNames = (header(req, 'x-amz-trailer') ?? '').split(',').map(s => s.trim().toLowerCase()).filter(s => s !== '')
  if (trailerNames.length > 0 && !streaming) throw s3err.invalidRequest('x-amz-trailer needs an aws-chunked body')

  // Checksums asked for: x-amz-checksum-ALG headers, or announced trailers.
  const algs = new Set<string>(['md5'])
  const expected = new Map<ChecksumAlgorithm, string | undefined>()
  for (const alg of CHECKSUM_ALGORITHMS) {
    const name = `x-amz-checksum-${alg}`
    const h = header(req, name)
    if (h !== undefined || trailerNames.includes(name)) { algs.add(alg); expected.set(alg, h) }
  }
  for (const t of trailerNames) if (!/^x-amz-checksum-(crc32|crc32c|sha1|sha256)$/.test(t)) throw s3err.invalidRequest(`unsupported trailer ${t.slice(0, 64)}`)
  const md5Header = header(req, 'content-md5')
  if (md5Header !== undefined && !/^[A-Za-z0-9+/]{22}==$/.test(md5Header)) throw s3err.invalidDigest()

  const signedHash = !streaming && o.payloadHash !== UNSIGNED_PAYLOAD
  if (signedHash && !/^[0-9a-f]{64}$/.test(o.payloadHash)) throw s3err.invalidArgument('x-amz-content-sha256 is not a SHA-256 hex digest, UNSIGNED-PAYLOAD or a STREAMING- value')
  if (signedHash) algs.add('sha256')
  const sums = bodySums([...algs], declared !== undefined ? Number(declared) : undefined)
  const decoder = streaming ? new AwsChunkedStream({ trailers: trailerNames, ...(o.payloadHash !== STREAMING_UNSIGNED_TRAILER && o.signing !== undefined ? { signing: o.signing } : {}) }) : undefined
  let staged: StagedObject | undefined
  try {
    staged = await pump(req, decoder, o.stager.writer(), sums, o.maxBytes, o.signal)
    const size = staged.size
    if (declared !== undefined && size !== Number(declared)) throw s3err.incompleteBody()
    const digests = await sums.digests()
    const md5 = digests.get('md5')!
    if (md5Header !== undefined && md5.toString('base64') !== md5Header) throw s3err.badDigest()
    if (signedHash && digests.get('sha256')?.toString('hex') !== o.payloadHash) throw s3err.xAmzContentSha256Mismatch()
    const checksums: Record<string, string> = {}
    for (const alg of expected.keys()) {
      const want = expected.get(alg) ?? decoder?.decoder.trailers.get(`x-amz-checksum-${alg}`)
      const got = digests.get(alg)!.toString('base64')
      if (want === undefined) throw s3err.invalidRequest(`the x-amz-checksum-${alg} trailer is missing`)
      if (want !== got) throw s3err.badChecksum(alg.toUpperCase())
      checksums[alg] = got
    }
    return { staged, size, md5: md5.toString('hex'), checksums }
  } catch (err) {
    sums.drop()
    if (staged !== undefined) await o.stager.discard(staged)
    if (err instanceof S3Error) throw err
    if ((err as Error).name === 'AbortError' || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') throw s3err.incompleteBody()
    throw err
  }
}

/**
 * Moves the body's bytes (decoded when aws-chunked) into the digests and
 * the stage writer straight from the stream's 'data' events: each span is
 * copied into a hash slot and a chunking window, and the stream is paused
 * only while either has no room (a slot away, a chunk being written). No
 * stream stage and no promise per span. Refuses more than `max` bytes.
 * On failure the writer's staged chunks are deleted and the request is
 * drained, not destroyed, so the client still reads the S3 error.
 */
async function pump (req: IncomingMessage, decoder: AwsChunkedStream | undefined, writer: StageWriter, sums: BodySums, max: number, signal?: AbortSignal): Promise<StagedObject> {
  const src: Readable = decoder ?? req
  if (decoder !== undefined) req.pipe(decoder)
  const pacer = bodyGcPacer()
  let size = 0
  let waiting = false
  let ended = false
  let settled = false
  return await new Promise<StagedObject>((resolve, reject) => {
    const cleanup = (): void => {
      settled = true
      src.off('data', onData)
      src.off('end', onEnd)
      src.off('error', fail)
      req.off('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    function fail (err: Error): void {
      if (settled) return
      cleanup()
      if (decoder !== undefined) { req.unpipe(decoder); decoder.destroy() }
      req.resume()
      void writer.abort().then(() => { reject(err) }, (e: Error) => { reject(new Error(`${err.message}; deleting its staged chunks failed too: ${e.message}`, { cause: err })) })
    }
    const finish = (): void => {
      cleanup()
      writer.end().then(resolve, reject)
    }
    function onData (b: Buffer): void {
      if (settled) return
      size += b.length
      pacer.note(b.length)
      if (size > max) { fail(s3err.entityTooLarge(max)); return }
      const hashed = sums.update(b)
      let written: Promise<void> | undefined
      try {
        written = writer.write(b)
      } catch (err) {
        fail(err as Error)
        return
      }
      if (hashed === undefined && written === undefined) return
      waiting = true
      src.pause()
      Promise.all([hashed, written]).then(() => {
        waiting = false
        if (settled) return
        if (ended) finish()
        else src.resume()
      }, fail)
    }
    function onEnd (): void {
      ended = true
      if (!waiting) finish()
    }
    function onClose (): void { if (!req.complete) fail(s3err.incompleteBody()) }
    function onAbort (): void { fail(s3err.incompleteBody()) }
    if (signal?.aborted === true) { onAbort(); return }
    src.on('data', onData)
    src.once('end', onEnd)
    src.once('error', fail)
    req.once('close', onClose)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
