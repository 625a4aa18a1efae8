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
import { PassThrough, Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { StagedObject } from '../../p2p/content/objects.js'
import { bodySums, type BodySums } from './body-hasher.js'
import { AwsChunkedStream, type ChunkSigning } from './aws-chunked.js'
import { S3Error, s3err } from './errors.js'
import { bodyGcPacer } from './gc-pacer.js'
import { STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, UNSIGNED_PAYLOAD } from './sigv4.js'

export const CHECKSUM_ALGORITHMS = ['crc32', 'crc32c', 'sha1', 'sha256'] as const
export type ChecksumAlgorithm = typeof CHECKSUM_ALGORITHMS[number]

/** Writes a body's bytes somewhere invisible (ObjectStore.stageObject) and deletes them again. */
export interface BodyStager {
  stage: (source: AsyncIterable<Uint8Array>, signal?: AbortSignal) => Promise<StagedObject>
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

/** Counts and hashes what flows through (body-hasher.ts), and refuses more than `max` bytes. */
class Measure extends Transform {
  size = 0
  private readonly pacer = bodyGcPacer()
  constructor (private readonly max: number, readonly sums: BodySums) { super() }
  override _transform (chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length
    this.pacer.note(chunk.length)
    if (this.size > this.max) { cb(s3err.entityTooLarge(this.max)); return }
    const wait = this.sums.update(chunk)
    if (wait === undefined) cb(null, chunk)
    else wait.then(() => { cb(null, chunk) }, cb)
  }
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
  const measure = new Measure(o.maxBytes, sums)
  const decoder = streaming ? new AwsChunkedStream({ trailers: trailerNames, ...(o.payloadHash !== STREAMING_UNSIGNED_TRAILER && o.signing !== undefined ? { signing: o.signing } : {}) }) : undefined
  let staged: StagedObject | undefined
  try {
    // The request itself stays out of the pipeline: on a refused body it is
    // drained, not destroyed, so the client still reads the S3 error.
    const source = new PassThrough()
    req.pipe(source)
    const onClose = (): void => { if (!req.complete) source.destroy(s3err.incompleteBody()) }
    req.once('close', onClose)
    const sink = async (src: AsyncIterable<Uint8Array>): Promise<void> => { staged = await o.stager.stage(src, o.signal) }
    try {
      const stages = decoder !== undefined ? [source, decoder, measure, sink] : [source, measure, sink]
      await (pipeline as (...s: unknown[]) => Promise<void>)(...stages, ...(o.signal !== undefined ? [{ signal: o.signal }] : []))
    } catch (err) {
      req.unpipe(source)
      req.resume()
      throw err
    } finally {
      req.off('close', onClose)
    }
    if (staged === undefined) throw s3err.incompleteBody()
    if (declared !== undefined && measure.size !== Number(declared)) throw s3err.incompleteBody()
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
    return { staged, size: measure.size, md5: md5.toString('hex'), checksums }
  } catch (err) {
    sums.drop()
    if (staged !== undefined) await o.stager.discard(staged)
    if (err instanceof S3Error) throw err
    if ((err as Error).name === 'AbortError' || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') throw s3err.incompleteBody()
    throw err
  }
}
