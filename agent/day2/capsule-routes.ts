// API routes for day-two operations on capsules: restart, scale, a new spec
// for a running capsule, a rolling update (recorded in Raft, driven by the
// leader), and the plan of a stack.
// Each checks its body with zod and becomes one Raft command.
import { z } from 'zod'
import { ApiError, type ApiServer } from '../api/server.js'
import type { RaftHost } from '../raft/raft-host.js'
import { CapsuleSpecSchema, MAX_REPLICAS, NAME_RE } from '../scheduler/spec.js'
import { parseReference } from '../../p2p/content/reference.js'
import { planStack } from './stack-plan.js'
import { freshOrStale } from '../api/fresh-read.js'
import type { Logger } from '../logger.js'

const ScaleBody = z.strictObject({ replicas: z.number().int().min(1).max(MAX_REPLICAS) })
const RestartBody = z.strictObject({ instances: z.array(z.string().max(128)).max(MAX_REPLICAS).optional() }).optional()
/** At most this many capsules in one plan (a stack file). */
export const MAX_STACK_CAPSULES = 256
const DeploymentBody = z.strictObject({ spec: z.unknown(), timeoutMs: z.number().int().min(1000).max(86_400_000).default(120_000) })
const PlanBody = z.strictObject({ stack: z.string().regex(NAME_RE), specs: z.array(z.unknown()).max(MAX_STACK_CAPSULES) })

function bad (what: string, err: z.ZodError): ApiError {
  const i = err.issues[0]
  return new ApiError(400, `bad ${what}: ${i?.path.join('.') ?? ''}: ${i?.message ?? ''}`)
}

function parseSpec (raw: unknown): z.infer<typeof CapsuleSpecSchema> {
  const parsed = CapsuleSpecSchema.safeParse(raw)
  if (!parsed.success) throw bad('capsule spec', parsed.error)
  try { parseReference(parsed.data.image) } catch (err) { throw new ApiError(400, (err as Error).message) }
  return parsed.data
}

export function registerCapsuleOpsRoutes (api: ApiServer, raft: RaftHost, log: Logger): void {
  api.route('POST', '/v1/capsules/:name/restart', async (req) => {
    const name = req.params.name ?? ''
    const body = RestartBody.safeParse(await req.body())
    if (!body.success) throw bad('restart request', body.error)
    // An instance's name restarts that instance alone.
    const owner = raft.state.capsules.get(name) !== undefined ? name : raft.state.capsules.instance(name)?.capsule.spec.name
    if (owner === undefined) throw new ApiError(404, `no capsule named ${name}`)
    const instances = owner !== name ? [name] : body.data?.instances
    const r = await raft.write({ op: 'capsule.restart', name: owner, ...(instances !== undefined ? { instances } : {}) }, req.signal)
    if (!r.ok) throw new ApiError(404, r.reason)
    return { name: owner, restarted: instances ?? raft.state.capsules.get(owner)?.instances.map(i => i.name) ?? [] }
  })
  api.route('POST', '/v1/capsules/:name/scale', async (req) => {
    const body = ScaleBody.safeParse(await req.body())
    if (!body.success) throw bad('scale request', body.error)
    const r = await raft.write({ op: 'capsule.scale', name: req.params.name ?? '', replicas: body.data.replicas }, req.signal)
    if (!r.ok) throw new ApiError(r.reason.startsWith('no capsule') ? 404 : 409, r.reason)
    return raft.state.capsules.get(req.params.name ?? '')
  })
  api.route('PUT', '/v1/capsules/:name', async (req) => {
    const spec = parseSpec(await req.body())
    if (spec.name !== req.params.name) throw new ApiError(400, `the spec names ${spec.name}, the path ${req.params.name ?? ''}`)
    const r = await raft.write({ op: 'capsule.update', spec }, req.signal)
    if (!r.ok) throw new ApiError(r.reason.startsWith('no capsule') ? 404 : 409, r.reason)
    return raft.state.capsules.get(spec.name)
  })
  // A rolling update: the new spec now, the old instances replaced one at a time by the leader (rollout-driver.ts).
  api.route('POST', '/v1/capsules/:name/deployment', async (req) => {
    const body = DeploymentBody.safeParse(await req.body())
    if (!body.success) throw bad('rollout request', body.error)
    const spec = parseSpec(body.data.spec)
    if (spec.name !== req.params.name) throw new ApiError(400, `the spec names ${spec.name}, the path ${req.params.name ?? ''}`)
    const r = await raft.write({ op: 'deployment.start', spec, timeoutMs: body.data.timeoutMs }, req.signal)
    if (!r.ok) throw new ApiError(r.reason.startsWith('no capsule') ? 404 : 409, r.reason)
    return raft.state.rollouts.deployment(spec.name)
  })
  api.route('GET', '/v1/capsules/:name/deployment', async (req, res) => {
    await freshOrStale(async (sig) => { await raft.node.readIndex(sig) }, req.signal, res, log)
    const d = raft.state.rollouts.deployment(req.params.name ?? '')
    if (d === undefined) throw new ApiError(404, `no rollout of ${req.params.name ?? ''}`)
    return d
  })
  api.route('POST', '/v1/stacks/plan', async (req, res) => {
    const body = PlanBody.safeParse(await req.body())
    if (!body.success) throw bad('plan request', body.error)
    const specs = body.data.specs.map(parseSpec)
    await freshOrStale(async (sig) => { await raft.node.readIndex(sig) }, req.signal, res, log)
    return { plan: planStack(body.data.stack, raft.state.capsules.list(), specs), specs }
  })
}
