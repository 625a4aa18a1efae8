// The agent's local HTTP API: loopback only unless `[api] allow_remote`,
// every route behind a bearer token except /metrics (Prometheus scrapes
// without one; it holds no secrets), and only for requests whose `Host`
// names this listener (a DNS-rebound web page gets 421, /metrics included).
// Handlers return JSON; errors carry one line a person can act on.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { timingSafeEqual } from 'node:crypto'
import { isLoopbackHost } from '../../p2p/content/reference.js'
import { closeHttp, HostCheck, listenHttp } from '../http-host.js'

export class ApiError extends Error {
  override name = 'ApiError'
  constructor (readonly status: number, message: string) { super(message) }
}

/** A request whose `Host` is not this API's address (DNS rebinding): 421. */
export class ForeignHostError extends ApiError {
  override name = 'ForeignHostError'
}

/** `listen` on a non-loopback address without `allowRemote`. */
export class ApiBindRefusedError extends Error {
  override name = 'ApiBindRefusedError'
}

/** Refuses, before anything starts, an API address off loopback that `[api] allow_remote` did not allow. */
export function checkApiListen (hostPort: string, allowRemote: boolean): void {
  if (!isLoopbackHost(hostPort) && !allowRemote) {
    throw new ApiBindRefusedError(`refusing to serve the API on ${hostPort}: it is not a loopback address (set [api] allow_remote = true to expose it; every route but /metrics still needs the token)`)
  }
}

export interface ApiServerOptions {
  /** Allow binding a non-loopback address (`[api] allow_remote`). */
  allowRemote?: boolean
  /** `Host` names accepted besides loopback names and the bound address (`[api] allowed_hosts`). */
  allowedHosts?: string[]
}

export interface ApiRequest {
  method: string
  path: string
  params: Record<string, string>
  query: URLSearchParams
  body: () => Promise<unknown>
  raw: IncomingMessage
  signal: AbortSignal
}

/** A handler returns a JSON value, or takes over the response (streaming) and returns undefined. */
export type ApiHandler = (req: ApiRequest, res: ServerResponse) => Promise<unknown>

interface Route { method: string, pattern: RegExp, keys: string[], handler: ApiHandler, open: boolean }

export const MAX_BODY_BYTES = 1024 * 1024

export class ApiServer {
  private readonly routes: Route[] = []
  private server: Server | undefined
  private readonly hosts: HostCheck
  /** The dashboard's session cookie check (agent/ui): a second way in besides the bearer token. */
  private sessionCheck: ((req: IncomingMessage) => boolean) | undefined

  private readonly tokenBytes: Buffer

  constructor (token: string, private readonly opts: ApiServerOptions = {}) {
    this.tokenBytes = Buffer.from(token)
    this.hosts = new HostCheck(opts.allowedHosts)
  }

  route (method: string, path: string, handler: ApiHandler, opts: { open?: boolean } = {}): void {
    const keys: string[] = []
    const pattern = new RegExp('^' + path.replace(/:(\w+)(\*)?/g, (_m, k: string, star?: string) => { keys.push(k); return star === '*' ? '(.+)' : '([^/]+)' }) + '$')
    this.routes.push({ method, pattern, keys, handler, open: opts.open === true })
  }

  /** Accept a valid dashboard session cookie where a route needs the token; such requests that change state must come from this origin. */
  useSessions (check: (req: IncomingMessage) => boolean): void { this.sessionCheck = check }

  async listen (hostPort: string): Promise<string> {
    checkApiListen(hostPort, this.opts.allowRemote === true)
    const idx = hostPort.lastIndexOf(':')
    const host = hostPort.slice(0, idx).replace(/^\[|\]$/g, '')
    const port = Number(hostPort.slice(idx + 1))
    const server = createServer((req, res) => { void this.dispatch(req, res) })
    this.server = server
    return await listenHttp(server, host, port, this.hosts)
  }

  async close (): Promise<void> {
    await closeHttp(this.server)
  }

  private authorized (req: IncomingMessage): boolean {
    const h = req.headers.authorization ?? ''
    const m = /^Bearer (.+)$/.exec(h)
    if (m === null) return false
    const a = Buffer.from(m[1] ?? '')
    const b = this.tokenBytes
    return a.length === b.length && timingSafeEqual(a, b)
  }

  private async dispatch (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const method = req.method ?? 'GET'
    // Handlers stop when the client leaves before its answer is complete.
    // After a complete answer nothing is left to stop, and an abort there
    // cost each request an exception and a round of abort events.
    const ac = new AbortController()
    res.on('close', () => { if (!res.writableFinished) ac.abort() })
    try {
      if (!this.hosts.allows(req.headers.host)) throw new ForeignHostError(421, `Host ${JSON.stringify((req.headers.host ?? '').slice(0, 100))} is not this agent's API address (add it to [api] allowed_hosts if you reach the API by that name)`)
      // The first route of this method whose pattern matches; only a miss tests the others (404 or 405).
      const route = this.routes.find(r => r.method === method && r.pattern.test(url.pathname))
      if (route === undefined) {
        if (!this.routes.some(r => r.pattern.test(url.pathname))) throw new ApiError(404, `no such endpoint: ${url.pathname}`)
        throw new ApiError(405, `${method} not allowed on ${url.pathname}`)
      }
      // A browser page of another origin may not change anything here (cross-site request forgery).
      const unsafe = method !== 'GET' && method !== 'HEAD'
      if (unsafe && req.headers.origin !== undefined && !sameOrigin(req)) throw new ApiError(403, 'request from another origin refused')
      if (!route.open && !this.authorized(req)) {
        if (this.sessionCheck?.(req) !== true) throw new ApiError(401, 'missing or wrong API token (check DATA/api.json or --api-token)')
        if (unsafe && req.headers.origin === undefined) throw new ApiError(403, 'a dashboard request that changes state must carry its Origin')
      }
      const m = route.pattern.exec(url.pathname) as RegExpExecArray
      const params: Record<string, string> = {}
      route.keys.forEach((k, i) => { params[k] = decodeURIComponent(m[i + 1] ?? '') })
      const result = await route.handler({ method, path: url.pathname, params, query: url.searchParams, body: async () => await readJson(req), raw: req, signal: ac.signal }, res)
      if (res.headersSent || res.writableEnded) return
      send(res, 200, result ?? null)
    } catch (err) {
      if (res.headersSent) { res.destroy(err as Error); return }
      const status = err instanceof ApiError ? err.status : 500
      send(res, status, { error: (err as Error).message, name: (err as Error).name })
    }
  }
}

/** `Origin` names the very scheme, host and port the request was sent to. */
export function sameOrigin (req: IncomingMessage): boolean {
  const origin = req.headers.origin
  const host = req.headers.host
  return origin !== undefined && host !== undefined && origin.toLowerCase() === `http://${host.toLowerCase()}`
}

function send (res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/** The request's body, at most MAX_BODY_BYTES (events, not an async iterator: it is on every write's path). */
async function readBody (req: IncomingMessage): Promise<Buffer[]> {
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    if (req.readableEnded) { resolve(chunks); return }
    if (req.destroyed) { reject(new Error('request closed before its body was read')); return }
    let size = 0
    const done = (err?: Error): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('close', onClose)
      if (err === undefined) resolve(chunks)
      else reject(err)
    }
    const onData = (c: Buffer): void => {
      size += c.length
      if (size > MAX_BODY_BYTES) { req.pause(); done(new ApiError(413, `request body over ${MAX_BODY_BYTES} bytes`)); return }
      chunks.push(c)
    }
    const onEnd = (): void => { done() }
    const onError = (err: Error): void => { done(err) }
    // A client that leaves mid-body: 'close' without 'end'.
    const onClose = (): void => { if (!req.complete) done(new Error('request closed before its body was complete')) }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('close', onClose)
  })
}

async function readJson (req: IncomingMessage): Promise<unknown> {
  const body = Buffer.concat(await readBody(req))
  if (body.length === 0) return {}
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new ApiError(400, 'request body is not JSON')
  }
}
