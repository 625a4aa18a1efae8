// The fastest S3 server `aws s3 cp` can talk to, for s3-throughput's client
// ceiling: it speaks only what `cp` up and down needs (multipart upload,
// HEAD, ranged GET), checks no signature, hashes nothing and stores nothing
// (parts are read and dropped; GETs stream one fixed file from the page
// cache). What aws-cli reaches against it, on the same machine in the same
// run, is the most any real server can give that client here.
import { createReadStream } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { XMLBuilder } from 'fast-xml-parser'

const xml = new XMLBuilder({ ignoreAttributes: false })
const ETAG = '"00000000000000000000000000000000-1"'

export interface S3Sink { endpoint: string, close: () => Promise<void> }

/** Serves `file` (`size` bytes) as every object, and takes any upload. */
export async function startS3Sink (file: string, size: number): Promise<S3Sink> {
  const server: Server = createServer((req, res) => { handle(req, res, file, size) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

function handle (req: IncomingMessage, res: ServerResponse, file: string, size: number): void {
  const url = new URL(req.url ?? '/', 'http://sink')
  const [, bucket = '', ...rest] = url.pathname.split('/')
  const key = rest.join('/')
  const send = (status: number, body: string | undefined, headers: Record<string, string | number> = {}): void => {
    res.writeHead(status, { ...headers, ...(body !== undefined ? { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) } : {}) })
    res.end(body)
  }
  const afterBody = (fn: () => void): void => { req.on('end', fn).resume() }
  if (req.method === 'POST' && url.searchParams.has('uploads')) {
    afterBody(() => { send(200, xml.build({ InitiateMultipartUploadResult: { Bucket: bucket, Key: key, UploadId: 'sink' } })) })
  } else if (req.method === 'PUT') {
    afterBody(() => { send(200, undefined, { etag: ETAG, 'content-length': 0 }) })
  } else if (req.method === 'POST' && url.searchParams.has('uploadId')) {
    afterBody(() => { send(200, xml.build({ CompleteMultipartUploadResult: { Bucket: bucket, Key: key, ETag: ETAG } })) })
  } else if (req.method === 'HEAD' || req.method === 'GET') {
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    const start = range !== null ? Number(range[1]) : 0
    const end = range !== null && range[2] !== '' ? Math.min(Number(range[2]), size - 1) : size - 1
    const headers = { etag: ETAG, 'last-modified': new Date(0).toUTCString(), 'content-type': 'application/octet-stream', 'content-length': end - start + 1, 'accept-ranges': 'bytes', ...(range !== null ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}) }
    res.writeHead(range !== null ? 206 : 200, headers)
    if (req.method === 'HEAD') res.end()
    else createReadStream(file, { start, end, highWaterMark: 1024 * 1024 }).pipe(res)
  } else {
    afterBody(() => { send(501, xml.build({ Error: { Code: 'NotImplemented', Message: `${req.method ?? ''} ${url.pathname}` } })) })
  }
}
