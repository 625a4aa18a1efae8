// The S3 listener: one HTTP server per agent. Each request is checked for
// its Host (a rebound web page names its own), its SigV4 signature (header
// or presigned URL) against a key in the Raft state, and what the key may
// do (read-only, one bucket); then routed by method, bucket, key and
// sub-resource to the operations in bucket-ops.ts, object-ops.ts and
// multipart-ops.ts. Anything else is 501 NotImplemented, as an S3 XML error.
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { closeHttp, HostCheck, hostHeaderName, listenHttp } from '../http-host.js'
import { isLoopbackListen, splitHostPort } from '../mirror/request.js'
import { S3Error, s3err } from './errors.js'
import { checkTime, parseAuthorizationHeader, parsePresignedQuery, parseRawQuery, safeDecode, scopeOf, verifySignature } from './sigv4.js'
import { MAX_S3_KEY_BYTES } from './s3-state.js'
import { errorDocument } from './xml.js'
import type { S3Request } from './http.js'
import type { S3Deps } from './deps.js'
import { newS3Stats, type S3Stats } from './stats.js'
import { bucketOp } from './bucket-ops.js'
import { objectOp } from './object-ops.js'
import { multipartOp } from './multipart-ops.js'

export class S3BindRefusedError extends Error {
  override name = 'S3BindRefusedError'
}

/** One authenticated request, as the operations see it. */
/** Query parameters the operations understand; any other one is a sub-resource we do not serve. */
const KNOWN_PARAMS = new Set(['prefix', 'delimiter', 'marker', 'max-keys', 'list-type', 'continuation-token', 'start-after', 'fetch-owner', 'encoding-type',
  'max-uploads', 'tagging', 'key-marker', 'upload-id-marker', 'max-parts', 'part-number-marker', 'uploadId', 'partNumber', 'uploads', 'delete', 'location', 'x-id',
  'response-content-type', 'response-content-disposition', 'response-content-encoding', 'response-content-language', 'response-cache-control', 'response-expires'])

export class S3Server {
  readonly stats: S3Stats = newS3Stats()
  private server: Server | undefined
  private readonly hosts: HostCheck
  private readonly shutdown = new AbortController()
  url = ''

  constructor (private readonly deps: S3Deps) {
    this.hosts = new HostCheck(deps.config.allowed_hosts)
  }

  async start (): Promise<string> {
    const { listen, allow_remote: allowRemote } = this.deps.config
    if (!isLoopbackListen(listen) && !allowRemote) throw new S3BindRefusedError(`refusing to serve S3 on ${listen}: it is not a loopback address (set [s3] allow_remote = true to expose it)`)
    const { host, port } = splitHostPort(listen)
    const server = createServer((req, res) => { void this.handle(req, res) })
    server.keepAliveTimeout = 65_000
    server.requestTimeout = 0
    this.url = await listenHttp(server, host, port, this.hosts)
    this.server = server
    return this.url
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    const s = this.server
    this.server = undefined
    await closeHttp(s)
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomBytes(8).toString('hex').toUpperCase()
    res.setHeader('x-amz-request-id', requestId)
    const close = new AbortController()
    res.on('close', () => { if (!res.writableFinished) close.abort() })
    const signal = AbortSignal.any([this.shutdown.signal, close.signal])
    let op = 'unknown'
    const rawUrl = req.url ?? '/'
    try {
      if (!this.hosts.allows(req.headers.host)) throw new S3Error(421, 'InvalidRequest', `Host ${JSON.stringify((req.headers.host ?? '').slice(0, 100))} is not this endpoint's address (add it to [s3] allowed_hosts)`)
      if (rawUrl.length > 8192) throw s3err.invalidRequest('the request URI is too long')
      const q = rawUrl.indexOf('?')
      const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q)
      const query = parseRawQuery(q < 0 ? '' : rawUrl.slice(q + 1))
      const { bucket, key } = this.target(rawPath, req.headers.host ?? '')
      const cred = parsePresignedQuery(query) ?? (typeof req.headers.authorization === 'string' ? parseAuthorizationHeader(req.headers.authorization, req.headers) : undefined)
      if (cred === undefined) throw s3err.accessDenied('Anonymous access is not allowed: sign requests with an access key from `bolt-agent s3 key create`')
      checkTime(cred, Date.now())
      const access = await this.deps.accessKey(cred.accessKey, signal)
      if (access === undefined) throw s3err.invalidAccessKey()
      const signingKey = await verifySignature(req.method ?? 'GET', rawPath, query, req.headers, cred, access.secret)
      for (const k of query.keys()) if (!KNOWN_PARAMS.has(k) && !k.startsWith('X-Amz-')) throw s3err.notImplemented(`the ${k.slice(0, 40)} sub-resource`)
      const r: S3Request = { req, res, method: req.method ?? 'GET', bucket, key, query, cred, access, signingKey, signal, op }
      this.authorize(r)
      if (bucket === '' || key === '') await bucketOp(this.deps, r, this.stats)
      else if (Buffer.byteLength(key) > MAX_S3_KEY_BYTES) throw s3err.keyTooLong()
      else if (query.has('uploads') || query.has('uploadId')) await multipartOp(this.deps, r, this.stats)
      else await objectOp(this.deps, r, this.stats)
      op = r.op
    } catch (err) {
      this.fail(res, err as Error, rawUrl.split('?')[0] ?? '/', requestId)
      op = (err as S3Error).code ?? 'error'
    } finally {
      this.stats.requests.set(op, (this.stats.requests.get(op) ?? 0) + 1)
      // A body we did not read (an error before it) must not be left to stall the connection.
      if (!req.complete) req.resume()
    }
  }

  /** Bucket and key from a path-style URI, or from `BUCKET.DOMAIN` in Host (virtual-host style). */
  private target (rawPath: string, host: string): { bucket: string, key: string } {
    const domain = this.deps.config.domain?.toLowerCase()
    const name = hostHeaderName(host)
    if (domain !== undefined && name !== undefined && name.endsWith('.' + domain)) {
      return { bucket: name.slice(0, -domain.length - 1), key: safeDecode(rawPath.slice(1)) }
    }
    const path = rawPath.slice(1)
    const slash = path.indexOf('/')
    if (slash < 0) return { bucket: safeDecode(path), key: '' }
    return { bucket: safeDecode(path.slice(0, slash)), key: safeDecode(path.slice(slash + 1)) }
  }

  private authorize (r: S3Request): void {
    const write = r.method !== 'GET' && r.method !== 'HEAD'
    if (r.access.readOnly && write) throw s3err.accessDenied(`access key ${r.access.accessKey} is read-only`)
    if (r.access.bucket !== undefined && r.bucket !== '' && r.bucket !== r.access.bucket) throw s3err.accessDenied(`access key ${r.access.accessKey} may use bucket ${r.access.bucket} only`)
    const copy = r.req.headers['x-amz-copy-source']
    if (typeof copy === 'string' && r.access.bucket !== undefined && !safeDecode(copy).replace(/^\//, '').startsWith(r.access.bucket + '/')) throw s3err.accessDenied(`access key ${r.access.accessKey} may use bucket ${r.access.bucket} only`)
  }

  private fail (res: ServerResponse, err: Error, resource: string, requestId: string): void {
    const e = err instanceof S3Error ? err : s3err.internal(err.message)
    if (!(err instanceof S3Error)) this.deps.log.warn({ err: err.message }, 's3: request failed')
    if (res.headersSent) { res.destroy(err); return }
    const body = Buffer.from(errorDocument(e, resource, requestId))
    res.writeHead(e.status, { 'content-type': 'application/xml', 'content-length': body.length })
    res.end(res.req.method === 'HEAD' ? undefined : body)
  }
}

export { scopeOf }
