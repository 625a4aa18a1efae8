// Helpers shared by the CLI's command files.
import { defaultDataDir } from './config.js'
import { ApiClient, findApi } from './api/client.js'
import { UserError } from './errors.js'

export interface GlobalOpts {
  data?: string
  config?: string
  json?: boolean
  api?: string
  apiToken?: string
  logLevel?: string
}

export function out (line: string): void { process.stdout.write(line + '\n') }

export function dataDirOf (g: GlobalOpts): string { return g.data ?? defaultDataDir() }

export async function client (g: GlobalOpts): Promise<ApiClient> {
  const api = await findApi(dataDirOf(g), { ...(g.api !== undefined ? { url: g.api } : {}), ...(g.apiToken !== undefined ? { token: g.apiToken } : {}) })
  return new ApiClient(api)
}


/** commander's collector for repeatable options. */
export const collect = (v: string, prev: string[] = []): string[] => [...prev, v]

/** KEY=VALUE options into a record; a malformed one is a usage error naming the flag. */
export function pairs (flag: string, list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const p of list ?? []) {
    const i = p.indexOf('=')
    if (i <= 0) throw new UserError(`${flag} ${p}: expected KEY=VALUE`, 2)
    out[p.slice(0, i)] = p.slice(i + 1)
  }
  return out
}
