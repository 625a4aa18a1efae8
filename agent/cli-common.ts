// Helpers shared by the CLI's command files.
import { defaultDataDir } from './config.js'
import { ApiClient, findApi } from './api/client.js'

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

