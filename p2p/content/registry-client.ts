// OCI distribution API v2 client on Node's `fetch`: manifests (an index is
// resolved to this node's platform), blobs and blob ranges verified against
// their digests, Bearer/Basic auth from `WWW-Authenticate`, retries with
// back-off, mirrors tried before the registry itself. Plain HTTP is used
// only for loopback registries and those listed as insecure.
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { sha256Digest } from './digest.js'
import { BodyStalledError, DigestMismatchError, InsecureRegistryError, ManifestError, RegistryAuthError, RegistryError, SizeMismatchError } from './errors.js'
import {
  hostPlatform, isIndexMediaType, isManifestMediaType, MANIFEST_ACCEPT, manifestMediaType, MAX_MANIFEST_BYTES,
  parseImageIndex, parseImageManifest, selectPlatform, type ImageManifest, type Platform
} from './oci.js'
import { apiHost, DOCKER_HUB, formatReference, isLoopbackHost, type ImageReference } from './reference.js'

export const DEFAULT_RETRIES = 3
export const DEFAULT_BACKOFF_MS = 200
/** Wait for a response head (status and headers). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000
/**
 * A response body that delivers nothing for this long is abandoned (and
 * retried): a server that ends a response short of its Content-Length but
 * keeps the connection open leaves the client waiting for the rest (our
 * throttling test proxy did exactly that), and each such body costs this
 * much. Bytes stop for seconds on a congested link, not for half a minute.
 */
export const BODY_IDLE_TIMEOUT_MS = 30_000

export type RegistryCredential = { username: string, password: string } | { token: string }

export interface RegistryClientOptions {
  /** Registries (host[:port]) that may be spoken to over plain HTTP besides loopback ones. */
  insecure?: string[]
  /** Mirrors per registry host: base URLs (`http://127.0.0.1:5050`) tried in order before the registry. */
  mirrors?: Record<string, string[]>
  /** Credentials per registry host, from config. */
  credentials?: Record<string, RegistryCredential>
  /** Docker's config.json for credentials; `false` to not read one. Default ~/.docker/config.json. */
  dockerConfigPath?: string | false
  retries?: number
  backoffMs?: number
  timeoutMs?: number
  platform?: Platform
  fetch?: typeof fetch
  /** Called for every body byte received from a registry or mirror (metrics). */
  onBytes?: (n: number, kind: 'manifest' | 'blob') => void
  /**
   * Called before every URL this client fetches — each endpoint, each
   * redirect hop, each token realm — and throws to refuse it (the registry
   * mirror fetches for anyone who reaches it: see agent/mirror/upstream-guard.ts).
   */
  guard?: (url: URL) => Promise<void>
  /**
   * Whether credentials (from config or Docker's config.json) may be sent
   * for this repository; default: always. The mirror passes the repositories
   * its config names, so a client of the mirror cannot borrow the node's login.
   */
  useCredentials?: (ref: ImageReference) => boolean
  /** Told when Docker's config.json exists but cannot be used (its credentials are then ignored). */
  log?: (msg: string) => void
}

/** Redirects followed at most for one request (registries redirect blobs once, to a CDN). */
export const MAX_REDIRECTS = 5

export interface ResolvedManifest {
  /** Digest of the platform manifest. */
  digest: string
  mediaType: string
  bytes: Uint8Array
  manifest: ImageManifest
  /** When the reference named an index: its digest, media type and bytes. */
  index?: { digest: string, mediaType: string, bytes: Uint8Array }
}

const DockerConfigSchema = z.object({
  auths: z.record(z.string(), z.object({ auth: z.string().optional(), username: z.string().optional(), password: z.string().optional(), identitytoken: z.string().optional() })).optional()
}).loose()

interface Challenge { scheme: string, params: Record<string, string> }

interface RequestOptions { method?: 'GET' | 'HEAD', accept?: string, range?: string, signal?: AbortSignal }

const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/

export class RegistryClient {
  private readonly opts: RegistryClientOptions
  private readonly fetchFn: typeof fetch
  private readonly tokens = new Map<string, string>()
  private dockerAuths: Map<string, RegistryCredential> | undefined
  readonly platform: Platform

  constructor (opts: RegistryClientOptions = {}) {
    this.opts = { ...opts }
    this.fetchFn = opts.fetch ?? globalThis.fetch
    this.platform = opts.platform ?? hostPlatform()
  }

  /** Fetches the manifest of `ref`; an index is resolved to this node's platform. Digests are verified. */
  async resolve (ref: ImageReference, opts: { signal?: AbortSignal } = {}): Promise<ResolvedManifest> {
    const first = await this.getManifestBytes(ref, ref.digest ?? ref.tag ?? 'latest', opts.signal)
    if (isIndexMediaType(first.mediaType)) {
      const index = parseImageIndex(first.bytes)
      const d = selectPlatform(index, this.platform)
      const m = await this.getManifestBytes(ref, d.digest, opts.signal)
      if (!isManifestMediaType(m.mediaType)) throw new ManifestError(`${formatReference(ref)}: index entry ${d.digest} is ${m.mediaType}, not an image manifest`)
      return { digest: m.digest, mediaType: m.mediaType, bytes: m.bytes, manifest: parseImageManifest(m.bytes), index: first }
    }
    if (!isManifestMediaType(first.mediaType)) throw new ManifestError(`${formatReference(ref)}: unsupported manifest media type ${first.mediaType} (need OCI or Docker schema 2)`)
    return { digest: first.digest, mediaType: first.mediaType, bytes: first.bytes, manifest: parseImageManifest(first.bytes) }
  }

  /**
   * The digest `tag` names now, from a HEAD of its manifest (no body to
   * read or hash): the registry's `Docker-Content-Digest` for the same
   * Accept header a GET sends. undefined when the answer carries no usable
   * digest (then GET it). The claim is trusted no more than a GET's body
   * would be: a caller only compares it with a digest it has verified.
   */
  async headManifest (ref: ImageReference, tag: string, signal?: AbortSignal): Promise<string | undefined> {
    const res = await this.request(ref, `manifests/${tag}`, { method: 'HEAD', accept: MANIFEST_ACCEPT, signal })
    await res.body?.cancel().catch(() => {}) // a HEAD has no body; cancelling releases the connection whatever it says
    const claimed = res.headers.get('docker-content-digest')
    return claimed !== null && SHA256_DIGEST.test(claimed) ? claimed : undefined
  }

  /** One manifest by tag or digest, checked against the digest asked for or the one the registry claims. */
  async getManifestBytes (ref: ImageReference, tagOrDigest: string, signal?: AbortSignal): Promise<{ digest: string, mediaType: string, bytes: Uint8Array }> {
    return await this.retryBody(signal, async () => await this.getManifestOnce(ref, tagOrDigest, signal))
  }

  private async getManifestOnce (ref: ImageReference, tagOrDigest: string, signal?: AbortSignal): Promise<{ digest: string, mediaType: string, bytes: Uint8Array }> {
    const res = await this.request(ref, `manifests/${tagOrDigest}`, { accept: MANIFEST_ACCEPT, signal })
    const bytes = await readBody(res, MAX_MANIFEST_BYTES)
    this.opts.onBytes?.(bytes.length, 'manifest')
    const digest = sha256Digest(bytes)
    const claimed = res.headers.get('docker-content-digest')
    if (tagOrDigest.startsWith('sha256:') && digest !== tagOrDigest) throw new DigestMismatchError(`${formatReference(ref)}: manifest hashes to ${digest}, asked for ${tagOrDigest}`)
    if (claimed !== null && claimed.startsWith('sha256:') && claimed !== digest) throw new DigestMismatchError(`${formatReference(ref)}: manifest hashes to ${digest}, registry says ${claimed}`)
    return { digest, mediaType: manifestMediaType(bytes, res.headers.get('content-type')), bytes }
  }

  /** A whole blob, verified against its digest (and size when given). */
  async getBlob (ref: ImageReference, digest: string, opts: { size?: number, signal?: AbortSignal } = {}): Promise<Uint8Array> {
    return await this.retryBody(opts.signal, async () => await this.getBlobOnce(ref, digest, opts))
  }

  private async getBlobOnce (ref: ImageReference, digest: string, opts: { size?: number, signal?: AbortSignal }): Promise<Uint8Array> {
    const res = await this.request(ref, `blobs/${digest}`, { signal: opts.signal })
    const bytes = await readBody(res, opts.size ?? Number.MAX_SAFE_INTEGER)
    this.opts.onBytes?.(bytes.length, 'blob')
    if (opts.size !== undefined && bytes.length !== opts.size) throw new SizeMismatchError(`blob ${digest} is ${bytes.length} bytes, expected ${opts.size}`)
    const got = sha256Digest(bytes)
    if (got !== digest) throw new DigestMismatchError(`blob from ${ref.registry} hashes to ${got}, expected ${digest}`)
    return bytes
  }

  /** A blob response for streaming (not verified here: the caller hashes what it reads). */
  async openBlob (ref: ImageReference, digest: string, opts: { signal?: AbortSignal } = {}): Promise<Response> {
    return await this.request(ref, `blobs/${digest}`, { signal: opts.signal })
  }

  /**
   * `length` bytes of a blob from `start` (HTTP Range). A registry that
   * ignores Range and answers 200 is handled by cutting the range out of the
   * body. Not verifiable alone: callers check pieces or the whole blob.
   * With `into` (at least `length` bytes), a 206 body is read straight into
   * it and a view of it is returned.
   */
  async getBlobRange (ref: ImageReference, digest: string, start: number, length: number, opts: { signal?: AbortSignal, into?: Uint8Array } = {}): Promise<Uint8Array> {
    if (length === 0) return new Uint8Array(0)
    if (opts.into !== undefined && opts.into.byteLength < length) throw new RangeError(`a buffer of ${opts.into.byteLength} bytes cannot take a range of ${length}`)
    return await this.retryBody(opts.signal, async () => await this.getBlobRangeOnce(ref, digest, start, length, opts))
  }

  private async getBlobRangeOnce (ref: ImageReference, digest: string, start: number, length: number, opts: { signal?: AbortSignal, into?: Uint8Array }): Promise<Uint8Array> {
    const res = await this.request(ref, `blobs/${digest}`, { range: `bytes=${start}-${start + length - 1}`, signal: opts.signal })
    if (res.status === 206) {
      const bytes = await readBody(res, length, opts.into)
      this.opts.onBytes?.(bytes.length, 'blob')
      if (bytes.length !== length) throw new SizeMismatchError(`range ${start}+${length} of ${digest}: got ${bytes.length} bytes`)
      return bytes
    }
    const all = await readBody(res, Number.MAX_SAFE_INTEGER)
    this.opts.onBytes?.(all.length, 'blob')
    if (all.length < start + length) throw new SizeMismatchError(`blob ${digest} is ${all.length} bytes, shorter than range ${start}+${length}`)
    return all.subarray(start, start + length)
  }

  /**
   * Retries a request whose body broke off (connection reset, `terminated`):
   * the request itself was already retried for status codes, but a body
   * read fails after the response began. Typed errors (digest, size, auth,
   * HTTP status) are not retried here.
   */
  async retryBody<T> (signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const retries = this.opts.retries ?? DEFAULT_RETRIES
    const backoff = this.opts.backoffMs ?? DEFAULT_BACKOFF_MS
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn()
      } catch (err) {
        const name = (err as Error).name
        const typed = ['RegistryError', 'RegistryAuthError', 'UpstreamAddressRefusedError', 'DigestMismatchError', 'SizeMismatchError', 'ManifestError', 'PlatformNotFoundError', 'InsecureRegistryError', 'AbortError', 'TimeoutError'].includes(name)
        if (typed || signal?.aborted === true || attempt >= retries) throw err
        await sleep(backoff * 2 ** attempt * (0.5 + Math.random() / 2), signal)
      }
    }
  }

  // ---- HTTP -------------------------------------------------------------

  /** Base URLs to try for a registry: its mirrors, then the registry itself. */
  endpoints (registry: string): string[] {
    const host = apiHost(registry)
    const own = this.schemeFor(host) + '://' + host
    return [...(this.opts.mirrors?.[registry] ?? []), ...(registry === DOCKER_HUB ? this.opts.mirrors?.[host] ?? [] : []), own]
  }

  private schemeFor (host: string): 'http' | 'https' {
    return isLoopbackHost(host) || (this.opts.insecure ?? []).includes(host) ? 'http' : 'https'
  }

  private async request (ref: ImageReference, path: string, o: RequestOptions): Promise<Response> {
    const errors: Error[] = []
    for (const base of this.endpoints(ref.registry)) {
      const url = new URL(base)
      if (url.protocol === 'http:' && !isLoopbackHost(url.host) && !(this.opts.insecure ?? []).includes(url.host)) {
        errors.push(new InsecureRegistryError(`refusing plain HTTP to ${url.host}: list it under insecure registries to allow it`))
        continue
      }
      try {
        return await this.requestWithRetry(`${base}/v2/${ref.repository}/${path}`, ref, o)
      } catch (err) {
        errors.push(err as Error)
        if ((err as Error).name === 'AbortError' || o.signal?.aborted === true) throw err
      }
    }
    const last = errors[errors.length - 1]
    if (errors.length === 1 && last !== undefined) throw last
    throw new RegistryError(`${formatReference(ref)}: ${path.split('/')[0]} request failed on every endpoint: ${errors.map(e => e.message).join('; ')}`, last instanceof RegistryError ? last.status : undefined, { cause: last })
  }

  private async requestWithRetry (url: string, ref: ImageReference, o: RequestOptions): Promise<Response> {
    const retries = this.opts.retries ?? DEFAULT_RETRIES
    const backoff = this.opts.backoffMs ?? DEFAULT_BACKOFF_MS
    let authTried = false
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = {}
      if (o.accept !== undefined) headers.accept = o.accept
      if (o.range !== undefined) headers.range = o.range
      const host = new URL(url).host
      const auth = this.tokens.get(`${host}|${ref.repository}`)
      if (auth !== undefined) headers.authorization = auth
      let res: Response | undefined
      let error: Error | undefined
      // The timeout bounds the wait for the response head; the body is then
      // bounded by an idle timeout in readBody (a large layer over a slow
      // link may take minutes, and that is fine while bytes keep coming).
      const headTimeout = new AbortController()
      const timer = setTimeout(() => headTimeout.abort(new RegistryError(`${url}: no response within ${this.opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS} ms`)), this.opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS)
      try {
        const signals = [headTimeout.signal]
        if (o.signal !== undefined) signals.push(o.signal)
        res = await this.fetchFollowing(new URL(url), o.method ?? 'GET', headers, AbortSignal.any(signals))
      } catch (err) {
        if (o.signal?.aborted === true || (err as Error).name === 'UpstreamAddressRefusedError') throw err
        // The head timeout's own error already names the URL.
        error = err instanceof RegistryError ? err : new RegistryError(`${url}: ${fetchFailure(err as Error)}`, undefined, { cause: err })
      } finally {
        clearTimeout(timer)
      }
      if (res !== undefined) {
        if (res.ok) return res
        if (res.status === 401 && !authTried) {
          authTried = true
          const challenge = parseChallenge(res.headers.get('www-authenticate') ?? '')
          await res.body?.cancel()
          await this.authenticate(host, ref, challenge, o.signal)
          attempt--
          continue
        }
        const body = await res.text().catch(() => '') // the status alone still makes the error
        error = new RegistryError(`${url}: HTTP ${res.status}${body !== '' ? ' ' + body.slice(0, 200).trim() : ''}`, res.status)
        if (res.status === 401 || res.status === 403) throw new RegistryAuthError(`${host} refused access to ${ref.repository} (HTTP ${res.status}); check credentials in config or ~/.docker/config.json`, { cause: error })
        if (res.status < 500 && res.status !== 429 && res.status !== 408) throw error
      }
      if (attempt >= retries) throw error as Error
      const delay = backoff * 2 ** attempt * (0.5 + Math.random() / 2)
      await sleep(delay, o.signal)
    }
  }

  /**
   * Fetches `url`, following redirects here rather than in fetch so that the
   * guard sees every hop; the Authorization header goes only to the origin
   * it was issued for (a blob redirect to a CDN carries a signed URL instead).
   */
  private async fetchFollowing (url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    const origin = url.origin
    for (let hop = 0; ; hop++) {
      await this.opts.guard?.(url)
      const h = url.origin === origin ? headers : Object.fromEntries(Object.entries(headers).filter(([k]) => k !== 'authorization'))
      const res = await this.fetchFn(url, { method, headers: h, signal, redirect: 'manual' })
      const location = res.headers.get('location')
      if (![301, 302, 303, 307, 308].includes(res.status) || location === null) return res
      await res.body?.cancel().catch(() => {}) // a redirect's body is not read; cancelling one already ended changes nothing
      if (hop >= MAX_REDIRECTS) throw new RegistryError(`${origin}: more than ${MAX_REDIRECTS} redirects`)
      url = new URL(location, url)
    }
  }

  private async authenticate (host: string, ref: ImageReference, ch: Challenge | undefined, signal?: AbortSignal): Promise<void> {
    const cred = await this.credentialFor(ref, host)
    if (ch === undefined) throw new RegistryAuthError(`${host} asks for authentication without a usable WWW-Authenticate challenge`)
    if (ch.scheme === 'basic') {
      if (cred === undefined || !('username' in cred)) throw new RegistryAuthError(`${host} needs a username and password (add them to config or ~/.docker/config.json)`)
      this.tokens.set(`${host}|${ref.repository}`, 'Basic ' + Buffer.from(`${cred.username}:${cred.password}`).toString('base64'))
      return
    }
    if (ch.scheme !== 'bearer' || ch.params.realm === undefined) throw new RegistryAuthError(`${host}: unsupported auth challenge ${ch.scheme}`)
    if (cred !== undefined && 'token' in cred) {
      this.tokens.set(`${host}|${ref.repository}`, `Bearer ${cred.token}`)
      return
    }
    const u = new URL(ch.params.realm)
    await this.opts.guard?.(u)
    if (ch.params.service !== undefined) u.searchParams.set('service', ch.params.service)
    u.searchParams.set('scope', ch.params.scope ?? `repository:${ref.repository}:pull`)
    const headers: Record<string, string> = {}
    if (cred !== undefined && 'username' in cred) headers.authorization = 'Basic ' + Buffer.from(`${cred.username}:${cred.password}`).toString('base64')
    const signals = [AbortSignal.timeout(this.opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS)]
    if (signal !== undefined) signals.push(signal)
    const res = await this.fetchFn(u, { headers, signal: AbortSignal.any(signals), redirect: this.opts.guard === undefined ? 'follow' : 'error' })
    if (!res.ok) throw new RegistryAuthError(`token endpoint ${u.host} answered HTTP ${res.status} for ${ref.repository}`)
    const body = z.object({ token: z.string().optional(), access_token: z.string().optional() }).parse(await res.json())
    const token = body.token ?? body.access_token
    if (token === undefined) throw new RegistryAuthError(`token endpoint ${u.host} returned no token`)
    this.tokens.set(`${host}|${ref.repository}`, `Bearer ${token}`)
  }

  private async credentialFor (ref: ImageReference, host: string): Promise<RegistryCredential | undefined> {
    if (this.opts.useCredentials !== undefined && !this.opts.useCredentials(ref)) return undefined
    const registry = ref.registry
    const fromConfig = this.opts.credentials?.[registry] ?? this.opts.credentials?.[host]
    if (fromConfig !== undefined) return fromConfig
    if (this.dockerAuths === undefined) this.dockerAuths = await loadDockerAuths(this.opts.dockerConfigPath, this.opts.log)
    if (registry === DOCKER_HUB) return this.dockerAuths.get('https://index.docker.io/v1/') ?? this.dockerAuths.get('docker.io') ?? this.dockerAuths.get(host)
    return this.dockerAuths.get(registry) ?? this.dockerAuths.get(host) ?? this.dockerAuths.get(`https://${registry}`)
  }
}

async function loadDockerAuths (path: string | false | undefined, log?: (msg: string) => void): Promise<Map<string, RegistryCredential>> {
  const out = new Map<string, RegistryCredential>()
  if (path === false) return out
  const file = path ?? join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json')
  let raw: unknown
  try {
    raw = JSON.parse(await readFile(file, 'utf8'))
  } catch (err) {
    // No config.json is the usual case; one that cannot be read is said, then pulls go on without its credentials.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log?.(`registry credentials: ${file} cannot be used (${(err as Error).message}); its logins are ignored`)
    return out
  }
  const cfg = DockerConfigSchema.safeParse(raw)
  if (!cfg.success) { log?.(`registry credentials: ${file} is not a Docker config (${cfg.error.issues[0]?.message ?? 'bad shape'}); its logins are ignored`); return out }
  for (const [key, a] of Object.entries(cfg.data.auths ?? {})) {
    if (a.identitytoken !== undefined) { out.set(key, { token: a.identitytoken }); continue }
    if (a.username !== undefined && a.password !== undefined) { out.set(key, { username: a.username, password: a.password }); continue }
    if (a.auth !== undefined) {
      const dec = Buffer.from(a.auth, 'base64').toString('utf8')
      const i = dec.indexOf(':')
      if (i > 0) out.set(key, { username: dec.slice(0, i), password: dec.slice(i + 1) })
    }
  }
  return out
}

/** Parses `Bearer realm="...",service="...",scope="..."`. */
export function parseChallenge (header: string): Challenge | undefined {
  const m = /^\s*(\w+)\s*(.*)$/.exec(header)
  if (m === null) return undefined
  const params: Record<string, string> = {}
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g
  let p: RegExpExecArray | null
  while ((p = re.exec(m[2] as string)) !== null) params[(p[1] as string).toLowerCase()] = p[2] ?? p[3] ?? ''
  return { scheme: (m[1] as string).toLowerCase(), params }
}

/**
 * Reads a body of at most `max` bytes: into `into` when given (at least
 * `max` bytes; a view of the part filled is returned), else into a new
 * buffer.
 */
async function readBody (res: Response, max: number, into?: Uint8Array): Promise<Uint8Array> {
  const len = res.headers.get('content-length')
  if (len !== null && Number(len) > max) {
    await res.body?.cancel()
    throw new SizeMismatchError(`response of ${len} bytes exceeds the expected ${max}`)
  }
  if (res.body === null) return new Uint8Array(0)
  const parts: Uint8Array[] = []
  let n = 0
  for await (const chunk of idleBounded(res.body, BODY_IDLE_TIMEOUT_MS)) {
    if (n + chunk.length > max) throw new SizeMismatchError(`response exceeds the expected ${max} bytes`)
    if (into !== undefined) into.set(chunk, n)
    else parts.push(chunk)
    n += chunk.length
  }
  return into !== undefined ? into.subarray(0, n) : new Uint8Array(Buffer.concat(parts))
}

/** Yields a body's chunks; fails with RegistryError when no byte arrives for `idleMs`. */
export async function * idleBounded (body: ReadableStream<Uint8Array>, idleMs: number): AsyncGenerator<Uint8Array> {
  const reader = body.getReader()
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const idle = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new BodyStalledError(`response body stalled for ${idleMs} ms`)), idleMs)
      })
      try {
        const r = await Promise.race([reader.read(), idle])
        if (r.done) return
        yield r.value
      } finally {
        clearTimeout(timer)
      }
    }
  } finally {
    reader.cancel().catch(() => {}) // releases the connection; the body's own outcome was already thrown or returned above
  }
}

async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason as Error) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * undici says only "fetch failed" and puts what happened in `cause`
 * (connect ECONNREFUSED 127.0.0.1:5000, getaddrinfo ENOTFOUND host, a TLS
 * error): name both, so a person can tell a typo from a registry that is down.
 */
function fetchFailure (err: Error): string {
  const cause = err.cause
  if (cause instanceof Error && cause.message !== '' && !err.message.includes(cause.message)) return `${err.message} (${cause.message})`
  return err.message
}
