// Talks to a running agent's API: found through DATA/api.json, or given by
// --api URL and --api-token.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'

export const API_FILE = 'api.json'
export const ApiFileSchema = z.object({ url: z.string().url(), token: z.string().min(16), pid: z.number().int().optional() })
export type ApiFile = z.infer<typeof ApiFileSchema>

export class AgentUnreachableError extends Error {
  override name = 'AgentUnreachableError'
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
  } catch {
    throw new AgentUnreachableError(`no agent is running with data dir ${dataDir} (start one with \`bolt-agent init\`, \`join\`, \`start\` or \`dev\`, or pass --data)`)
  }
  const parsed = ApiFileSchema.safeParse(JSON.parse(text))
  if (!parsed.success) throw new AgentUnreachableError(`${join(dataDir, API_FILE)} is damaged; restart the agent`)
  return parsed.data
}

export class ApiClient {
  constructor (private readonly api: ApiFile) {}

  async request<T = unknown> (method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.raw(method, path, body, signal)
    const text = await res.text()
    let value: unknown = null
    try { value = text === '' ? null : JSON.parse(text) } catch { value = { error: text } }
    if (!res.ok) {
      const v = value as { error?: string, name?: string } | null
      throw new AgentRequestError(res.status, v?.error ?? `HTTP ${res.status}`, v?.name)
    }
    return value as T
  }

  async raw (method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    try {
      return await fetch(this.api.url + path, {
        method,
        headers: { authorization: `Bearer ${this.api.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal !== undefined ? { signal } : {})
      })
    } catch (err) {
      throw new AgentUnreachableError(`cannot reach the agent at ${this.api.url} (${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}); is it running?`)
    }
  }
}
