// Shared pieces of the Raft scenarios: forming a cluster of voters and
// talking to agents' KV API directly over HTTP.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { waitFor, type AgentProcess, type Cluster, type StatusLike } from '../test/helpers/harness.js'

export const RAFT_TOML = (voters: number): string => `
[raft]
voters = ${voters}
dead_voter_grace_ms = 5000
[membership]
probe_interval_ms = 300
probe_timeout_ms = 150
suspicion_mult = 3
gossip_interval_ms = 100
push_pull_interval_ms = 5000
`

export async function apiOf (a: AgentProcess): Promise<{ url: string, token: string }> {
  return JSON.parse(await readFile(join(a.dataDir, 'api.json'), 'utf8')) as { url: string, token: string }
}

export async function kv (api: { url: string, token: string }, method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, body?: unknown, timeout: number | AbortSignal = 5000): Promise<{ status: number, body: Record<string, unknown> }> {
  const res = await fetch(api.url + path, {
    method,
    headers: { authorization: `Bearer ${api.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: typeof timeout === 'number' ? AbortSignal.timeout(timeout) : timeout
  })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

/**
 * Waits until every given agent names the same leader (a voter) and term;
 * returns it. `notLeader`: a node just killed, which survivors keep naming
 * until they notice (a status poll can come back before that).
 */
export async function agreedLeader (agents: AgentProcess[], timeoutMs: number, notLeader?: string): Promise<{ leader: string, term: number } | undefined> {
  let found: { leader: string, term: number } | undefined
  const ok = await waitFor(async () => {
    const sts = await Promise.all(agents.map(async a => await a.status()))
    if (sts.some(s => s === undefined || s.leader === null || s.leader === notLeader)) return false
    const first = sts[0] as StatusLike
    if (!sts.every(s => s!.leader === first.leader && s!.term === first.term)) return false
    found = { leader: first.leader!, term: first.term }
    return true
  }, timeoutMs, 100)
  return ok < 0 ? undefined : found
}

export async function voters (a: AgentProcess): Promise<number> {
  const s = await a.status()
  return s?.members.filter(m => m.role === 'server' && m.state === 'alive').length ?? 0
}

export async function formVoters (cluster: Cluster, n: number): Promise<AgentProcess[]> {
  // Loaded machines (load average 20-30 on 2 cores) took over 30 s to make a joiner ready.
  const agents = await cluster.form(n, 'quic', 120_000)
  const ok = await waitFor(async () => (await voters(agents[0]!)) === n, 60_000, 200)
  if (ok < 0) throw new Error(`${n} voters not formed within 60 s`)
  return agents
}
