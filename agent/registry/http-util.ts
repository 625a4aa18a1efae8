// Small request helpers of the registry endpoint: one header, the declared
// body length, and a bounded body read.
import type { IncomingMessage } from 'node:http'
import { MirrorRequestError } from '../mirror/errors.js'

export function header (req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

export function contentLength (req: IncomingMessage): number | undefined {
  const v = header(req, 'content-length')
  if (v === undefined) return req.headers['transfer-encoding'] !== undefined ? undefined : 0
  const n = Number(v)
  if (!/^\d{1,16}$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new MirrorRequestError(400, 'BLOB_UPLOAD_INVALID', 'invalid Content-Length')
  return n
}

export async function readBody (req: IncomingMessage, max: number): Promise<Uint8Array> {
  const parts: Buffer[] = []
  let n = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length
    if (n > max) throw new MirrorRequestError(413, 'SIZE_INVALID', `body over ${max} bytes`)
    parts.push(chunk)
  }
  return new Uint8Array(Buffer.concat(parts))
}
