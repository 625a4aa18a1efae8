// API routes for nodes: drain (start, progress, deadline release) and
// eligibility. A drain is a Raft record the leader finishes; these routes
// start it and read it. NODE is a member's name or id.
import { z } from 'zod'
import { ApiError, type ApiServer } from '../api/server.js'
import type { RaftHost } from '../raft/raft-host.js'
import type { MemberView } from '../membership-host.js'
import { freshOrStale } from '../api/fresh-read.js'
import type { Logger } from '../logger.js'
import type { RolloutTable } from '../state/rollouts.js'
import { drainRemaining, releaseDrain, resolveNode, startDrain, UnknownNodeError, type DrainDeps } from './drain.js'

const EligibilityBody = z.strictObject({ eligible: z.boolean() })
/** The drain's deadline from now; an hour when absent (the CLI's default). */
const DrainBody = z.strictObject({ deadlineMs: z.number().int().min(0).max(30 * 86_400_000).default(3_600_000) }).default({ deadlineMs: 3_600_000 })

export function registerNodeRoutes (api: ApiServer, raft: RaftHost, members: () => MemberView[], log: Logger): void {
  const deps: DrainDeps & { rollouts: () => RolloutTable } = { capsules: () => raft.state.capsules, rollouts: () => raft.state.rollouts, write: async (cmd, signal) => await raft.write(cmd, signal) }
  const member = (node: string): MemberView => {
    try { return resolveNode(members(), node) } catch (err) {
      if (err instanceof UnknownNodeError) throw new ApiError(404, err.message)
      throw err
    }
  }
  const named = (m: MemberView): { id: string, name: string } => ({ id: m.id, name: m.name })
  api.route('POST', '/v1/nodes/:node/drain', async (req) => {
    const body = DrainBody.safeParse(await req.body())
    if (!body.success) throw new ApiError(400, `bad drain request: ${body.error.issues[0]?.path.join('.') ?? ''}: ${body.error.issues[0]?.message ?? ''}`)
    const m = member(req.params.node ?? '')
    // Recorded in the Raft state and finished by the leader: the caller may leave at once.
    const d = await startDrain(deps, m.id, Date.now() + body.data.deadlineMs, req.signal)
    return { node: named(m), moving: d.moving, deadline: d.deadline }
  })
  api.route('GET', '/v1/nodes/:node/drain', async (req, res) => {
    const m = member(req.params.node ?? '')
    await freshOrStale(async (sig) => { await raft.node.readIndex(sig) }, req.signal, res, log)
    return { node: named(m), eligible: raft.state.capsules.isEligible(m.id), remaining: drainRemaining(raft.state.capsules, m.id), drain: raft.state.rollouts.drain(m.id) ?? null }
  })
  api.route('POST', '/v1/nodes/:node/release', async (req) => {
    const m = member(req.params.node ?? '')
    return { node: named(m), released: await releaseDrain(deps, m.id, req.signal) }
  })
  api.route('POST', '/v1/nodes/:node/eligibility', async (req) => {
    const body = EligibilityBody.safeParse(await req.body())
    if (!body.success) throw new ApiError(400, `bad eligibility request: ${body.error.issues[0]?.path.join('.') ?? ''}: ${body.error.issues[0]?.message ?? ''}`)
    const m = member(req.params.node ?? '')
    const r = await raft.write({ op: 'node.eligibility', id: m.id, eligible: body.data.eligible, reason: body.data.eligible ? '' : 'disabled' }, req.signal)
    if (!r.ok) throw new ApiError(409, r.reason)
    return { node: named(m), eligible: body.data.eligible }
  })
}
