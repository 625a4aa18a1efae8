// Talks to a running agent's API: found through DATA/api.json, or given by
// --api URL and --api-token. Every client command loads this file, so it
// imports no zod (whose import alone costs more CPU than Node's start):
// api.json is checked by hand in parseApiFile, and a test holds that check
// to the zod schema it replaces, with fast-check.
import { readFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'

export const API_FILE = 'api.json'
/** What a running agent writes to DATA/api.json (mode 0600). */
export interface ApiFile { url: string, token: string, pid?: number }
/** A token shorter than this is not one an agent wrote. */
export const MIN_API_TOKEN_LENGTH = 16

export class AgentUnreachableError extends Error {
  override name = 'AgentUnreachableError'
}
/** api.json exists but is not what an agent writes (truncated, edited, another program's). */
export class ApiFileDamagedError extends Error {
  override name = 'ApiFileDamagedError'
}

/**
 * Checks api.json's text: a JSON object with an http(s) `url`, a `token` of
 * at least MIN_API_TOKEN_LENGTH characters and an optional integer `pid`.
 * Throws ApiFileDamagedError naming the file and what is wrong with it.
 */
export function parseApiFile (text: string, file: string): ApiFile {
  const damaged = (what: string): ApiFileDamagedError =>
    new ApiFileDamagedError(`${file} is damaged (${what}); if an agent is running, restart it to rewrite the file, else delete the file`)
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw damaged(text.trim() === '' ? 'empty' : `not JSON: ${(err as Error).message}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw damaged('not a JSON object')
  const { url, token, pid } = v as Record<string, unknown>
  if (typeof url !== 'string' || !isHttpUrl(url)) throw damaged('no http(s) "url"')
  if (typeof token !== 'string' || token.length < MIN_API_TOKEN_LENGTH) throw damaged(`no "token" of at least ${MIN_API_TOKEN_LENGTH} characters`)
  if (pid !== undefined && !Number.isSafeInteger(pid)) throw damaged('"pid" is not an integer')
  return pid === undefined ? { url, token } : { url, token, pid: pid as number }
}

function isHttpUrl (s: string): boolean {
  try {
    const u = new URL(s)
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host !== ''
  } catch (err) {
    if (err instanceof TypeError) return false // new URL's only failure: not a URL
    throw err
  }
}
export class AgentRequestError extends Error {
  override name = 'AgentRequestError'
  constructor (readonly status: number, message: string, readonly remoteName?: string) { super(message) }
}

export async function findApi (dataDir: string, override: { url?: string, token?: string }): Promise<ApiFile> {
  if (override.url !== undefined) {
    if (override.token === undefined) throw new AgentUnreachableError('--api needs --api-token too')
    return { url: override.url, token: override.token }
  }
  let text: string
  try {
    text = await readFile(join(dataDir, API_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new AgentUnreachableError(`cannot read ${join(dataDir, API_FILE)}: ${(err as Error).message}`)
    throw new AgentUnreachableError(`no agent is running with data dir ${dataDir} (start one with \`bolt-agent init\`, \`join\`, \`start\` or \`dev\`, or pass --data)`)
  }
  return parseApiFile(text, join(dataDir, API_FILE))
}

/**
 * An answer from the agent: the status and a body read once, as text, JSON or
 * a stream of chunks (NDJSON). Shaped like fetch's Response for its callers.
 */
export class ApiResponse {
  readonly status: number
  readonly ok: boolean
  constructor (private readonly res: IncomingMessage) {
    this.status = res.statusCode ?? 0
    this.ok = this.status >= 200 && this.status < 300
  }

  get body (): AsyncIterable<Uint8Array> { return this.res }

  /** A response header's value (the last one when repeated). */
  header (name: string): string | undefined {
    const v = this.res.headers[name.toLowerCase()]
    return Array.isArray(v) ? v[v.length - 1] : v
  }

  /** Drops the body unread, closing the connection. */
  discard (): void { this.res.destroy() }

  async text (): Promise<string> {
    const chunks: Buffer[] = []
    for await (const c of this.res) chunks.push(c as Buffer)
    return Buffer.concat(chunks).toString('utf8')
  }

  async json (): Promise<unknown> { return JSON.parse(await this.text()) }
}

/**
 * The agent API over node:http rather than fetch: fetch loads undici on
 * first use (its parser is WebAssembly), which cost a client command about
 * 20 ms of CPU, as much as Node's own start.
 */
export class ApiClient {
  constructor (private readonly api: ApiFile) {}

  async request<T = unknown> (method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.raw(method, path, body, signal)
    const text = await res.text()
    let value: unknown = null
    try { value = text === '' ? null : JSON.parse(text) } catch { value = { error: text } } // a body that is not JSON (a proxy's page) becomes the message
    if (!res.ok) {
      const v = value as { error?: string, name?: string } | null
      throw new AgentRequestError(res.status, v?.error ?? `HTTP ${res.status}`, v?.name)
    }
    return value as T
  }

  async raw (method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<ApiResponse> {
    const payload = body !== undefined ? Buffer.from(JSON.stringify(body)) : undefined
    const headers: Record<string, string | number> = { authorization: `Bearer ${this.api.token}` }
    if (payload !== undefined) { headers['content-type'] = 'application/json'; headers['content-length'] = payload.length }
    const url = new URL(path, this.api.url)
    // getBuiltinModule, not import: an ESM import of node:http reads every
    // export, and its lazy WebSocket getters load undici, http2 and zlib.
    const { request } = url.protocol === 'https:' ? process.getBuiltinModule('node:https') : process.getBuiltinModule('node:http')
    try {
      return await new Promise<ApiResponse>((resolve, reject) => {
        // No keep-alive agent: a command makes a few requests, and an idle pooled socket would hold the process open.
        const req = request(url, { method, headers, agent: false, ...(signal !== undefined ? { signal } : {}) }, res => { resolve(new ApiResponse(res)) })
        req.once('error', reject)
        req.end(payload)
      })
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err
      throw new AgentUnreachableError(`cannot reach the agent at ${this.api.url} (${(err as Error).message}); is it running?`)
    }
  }
}
