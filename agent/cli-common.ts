// Helpers shared by the CLI's command files.
import { defaultDataDir } from './data-dir.js'
import { join } from 'node:path'
import { API_FILE, ApiClient, findApi } from './api/client.js'
import { UserError } from './errors.js'

export interface GlobalOpts {
  data?: string
  config?: string
  json?: boolean
  api?: string
  apiToken?: string
  logLevel?: string
}

let stdoutClosed = false
let agentRunning = false

export function out (line: string): void { if (!stdoutClosed) process.stdout.write(line + '\n') }

/**
 * A reader that goes away (`bolt-agent status | head -1`) closes stdout
 * under us, and the next write fails with EPIPE. A client command then ends
 * quietly (exit 0), as a tool killed by SIGPIPE would stop; an agent keeps
 * running and prints nothing more to stdout (its logs go to stderr).
 */
export function handleClosedStdout (): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err
    stdoutClosed = true
    if (!agentRunning) process.exit(0)
  })
}

/** This process runs an agent: a closed stdout must not end it. */
export function markAgentRunning (): void { agentRunning = true }

export function dataDirOf (g: GlobalOpts): string { return g.data ?? defaultDataDir() }

export async function client (g: GlobalOpts): Promise<ApiClient> {
  const api = await findApi(await clientDataDir(g), { ...(g.api !== undefined ? { url: g.api } : {}), ...(g.apiToken !== undefined ? { token: g.apiToken } : {}) })
  return new ApiClient(api)
}

/**
 * The data dir a client command talks to: --data or BOLT_DATA when given;
 * else the default dir when an agent runs there; else the one agent this
 * user runs on this machine (`dev` lives in a temp dir), found through the
 * per-user runtime dir. Several: the person picks, from the list.
 */
export async function clientDataDir (g: GlobalOpts): Promise<string> {
  const chosen = dataDirOf(g)
  if (g.data !== undefined || g.api !== undefined || (process.env.BOLT_DATA ?? '') !== '') return chosen
  const { existsSync } = await import('node:fs')
  if (existsSync(join(chosen, API_FILE))) return chosen
  const { listLocalAgents } = await import('./local-agents.js')
  const agents = await listLocalAgents()
  if (agents.length === 1) return agents[0]!.dataDir
  if (agents.length > 1) {
    throw new UserError(`${agents.length} agents run on this machine and none in ${chosen}; pick one with --data:\n${agents.map(a => `  --data ${a.dataDir}   (pid ${a.pid}, API ${a.url})`).join('\n')}`)
  }
  return chosen
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

/** Bytes for people: `512 B`, `4.0 KiB`, `65.9 MiB`, `1.2 GiB` (JSON output keeps plain byte counts). */
export function formatBytes (n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v.toFixed(1)} ${units[i] as string}`
}
