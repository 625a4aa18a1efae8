// The API routes of the membership era: status, token, evict, leave, metrics.
// Later parts (kv, capsules, content) add their own route files.
import { z } from 'zod'
import { UnknownMemberError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { StatusJson } from '../status.js'
import { ApiError, type ApiServer } from './server.js'

interface TokenInfo { token: string, addrs: string[], join: string }

/** What the core routes need of the agent: the narrow face it shows to its API. */
export interface CoreRoutesHost {
  log: Logger
  debug: boolean
  status: () => StatusJson
  tokenInfo: () => TokenInfo
  rotateToken: () => Promise<TokenInfo>
  evict: (node: string) => Promise<{ evicted: { id: string, name: string }, keyVersion: number } & TokenInfo>
  leave: () => Promise<void>
  metrics: () => { text: () => Promise<string>, contentType: string }
  /** Fault hooks, used only with `[debug] enabled`. */
  setDropRate: (rate: number) => void
  partition: (peers: string[]) => void
}

const EvictBody = z.object({ node: z.string().min(1).max(128) })

export function registerCoreRoutes (api: ApiServer, agent: CoreRoutesHost): void {
  api.route('GET', '/v1/status', async () => agent.status())
  api.route('GET', '/v1/token', async () => agent.tokenInfo())
  api.route('POST', '/v1/token/rotate', async () => await agent.rotateToken())
  api.route('POST', '/v1/members/evict', async (req) => {
    const body = EvictBody.safeParse(await req.body())
    if (!body.success) throw new ApiError(400, 'expected {"node": NAME-OR-ID}')
    try {
      return await agent.evict(body.data.node)
    } catch (err) {
      if (err instanceof UnknownMemberError) throw new ApiError(404, err.message)
      throw err
    }
  })
  api.route('POST', '/v1/leave', async (_req, res) => {
    // Answer first, then leave: the caller should not see a reset connection.
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ leaving: true }))
    setImmediate(() => { void agent.leave().catch(err => agent.log.error({ err }, 'leave failed')) })
    return undefined
  })
  if (agent.debug) registerDebugRoutes(api, agent)
  api.route('GET', '/metrics', async (_req, res) => {
    const m = agent.metrics()
    const text = await m.text()
    res.writeHead(200, { 'content-type': m.contentType })
    res.end(text)
    return undefined
  }, { open: true })
}

/** Fault hooks for tests and scenarios; registered only with `[debug] enabled = true` (they cut a node off its cluster). */
function registerDebugRoutes (api: ApiServer, agent: CoreRoutesHost): void {
  api.route('POST', '/v1/debug/drop-rate', async (req) => {
    // Fault hook for scenarios: drop this fraction of membership messages.
    const body = await req.body() as { rate?: unknown }
    const rate = typeof body.rate === 'number' && body.rate >= 0 && body.rate <= 1 ? body.rate : undefined
    if (rate === undefined) throw new ApiError(400, 'rate must be a number in [0, 1]')
    agent.setDropRate(rate)
    return { rate }
  })
  api.route('POST', '/v1/debug/partition', async (req) => {
    // Fault hook for tests and scenarios: cut this node off from these peers ([] heals).
    const body = await req.body() as { peers?: unknown }
    if (!Array.isArray(body.peers) || !body.peers.every(p => typeof p === 'string')) throw new ApiError(400, 'peers must be an array of peer ids')
    agent.partition(body.peers as string[])
    return { peers: body.peers }
  })
}
