// Rollouts and drains in the replicated state, as Nomad's deployments: a
// record of the work and its progress, driven by the Raft leader
// (day2/rollout-driver.ts), so it goes on when the CLI that asked is killed
// and resumes from the record when the leader changes. Every step is one
// command that changes the capsules and the record together.
import { z } from 'zod'
import { CapsuleSpecSchema, type CapsuleSpec } from '../scheduler/spec.js'
import type { CapsuleTable, Result } from './capsules.js'

/** Drain records kept at most (finished ones go first); deployments are one per capsule. */
export const MAX_DRAINS = 1024

const Req = z.string().max(64)
const Name = z.string().max(128)
const Ms = z.number().int().nonnegative()

export const RolloutCommandSchemas = {
  /** `up` of a changed capsule: the new spec now, its old instances replaced one at a time by the leader. */
  'deployment.start': z.object({ op: z.literal('deployment.start'), req: Req, spec: CapsuleSpecSchema, timeoutMs: z.number().int().min(1000).max(86_400_000) }),
  /** The leader restarts the next instance with the new spec; `deadline` (its clock) bounds the wait for health. */
  'deployment.step': z.object({ op: z.literal('deployment.step'), req: Req, capsule: Name, id: Req, instance: Name, deadline: Ms }),
  /** The current instance runs the new spec, healthy. */
  'deployment.replaced': z.object({ op: z.literal('deployment.replaced'), req: Req, capsule: Name, id: Req, instance: Name }),
  /** Done; `failed` puts the previous spec back and restarts the failed instance with it. */
  'deployment.finish': z.object({ op: z.literal('deployment.finish'), req: Req, capsule: Name, id: Req, status: z.enum(['succeeded', 'failed']), reason: z.string().max(1024).nullable() }),
  /** `node drain`, `leave`: the node ineligible, each instance there placed elsewhere while its run keeps serving. */
  'drain.start': z.object({ op: z.literal('drain.start'), req: Req, node: Name, deadline: Ms }),
  /** Every instance moved (`release` false), or the deadline: what is still being left stops now. */
  'drain.finish': z.object({ op: z.literal('drain.finish'), req: Req, node: Name, release: z.boolean() })
}
type RolloutOp = keyof typeof RolloutCommandSchemas
export type RolloutCommand = { [K in RolloutOp]: z.infer<typeof RolloutCommandSchemas[K]> }[RolloutOp]

export interface DeploymentRecord {
  /** The request id of the `deployment.start` that made it: a CLI follows this one. */
  id: string
  capsule: string
  status: 'running' | 'succeeded' | 'failed'
  /** What the capsule ran before; put back when the rollout fails. */
  previousSpec: CapsuleSpec
  timeoutMs: number
  /** Old instances still to replace, in order. */
  pending: string[]
  replaced: string[]
  /** The instance being replaced: its generation and restarts before the restart, and when the leader gives up on it. */
  current: { instance: string, generation: number, restarts: number, deadline: number } | null
  reason: string | null
}

export interface DrainRecord {
  node: string
  status: 'running' | 'done'
  deadline: number
  /** Instances asked to move when the drain started. */
  moving: string[]
  /** Stopped by the deadline before their replacement was healthy. */
  released: string[]
}

export class RolloutTable {
  private deployments = new Map<string, DeploymentRecord>()
  private drains = new Map<string, DrainRecord>()

  constructor (private readonly capsules: CapsuleTable) {}

  deployment (capsule: string): DeploymentRecord | undefined { return this.deployments.get(capsule) }
  drain (node: string): DrainRecord | undefined { return this.drains.get(node) }
  running (): { deployments: DeploymentRecord[], drains: DrainRecord[] } {
    return { deployments: [...this.deployments.values()].filter(d => d.status === 'running'), drains: [...this.drains.values()].filter(d => d.status === 'running') }
  }

  /** A removed capsule's rollout is forgotten with it. */
  forget (capsule: string): void { this.deployments.delete(capsule) }

  apply (cmd: RolloutCommand): Result {
    switch (cmd.op) {
      case 'deployment.start': {
        const c = this.capsules.get(cmd.spec.name)
        if (c === undefined) return { ok: false, reason: `no capsule named ${cmd.spec.name}` }
        const earlier = this.deployments.get(c.spec.name)
        // A rollout that supersedes a running one keeps the last spec that ran everywhere to go back to.
        const previousSpec = earlier?.status === 'running' ? earlier.previousSpec : c.spec
        const before = new Set(c.instances.map(i => i.name))
        const r = this.capsules.apply({ op: 'capsule.update', req: cmd.req, spec: cmd.spec })
        if (!r.ok) return r
        this.deployments.set(c.spec.name, {
          id: cmd.req,
          capsule: c.spec.name,
          status: 'running',
          previousSpec,
          timeoutMs: cmd.timeoutMs,
          // Instances added by a larger replica count start with the new spec: only the old ones are replaced.
          pending: c.instances.filter(i => before.has(i.name)).map(i => i.name),
          replaced: [],
          current: null,
          reason: null
        })
        return { ok: true, value: cmd.req }
      }
      case 'deployment.step': {
        const d = this.runningDeployment(cmd.capsule, cmd.id)
        if (d === undefined || d.current !== null || d.pending[0] !== cmd.instance) return { ok: false, reason: 'stale rollout step' }
        const f = this.capsules.instance(cmd.instance)
        d.pending.shift()
        if (f === undefined) return { ok: true } // removed by a scale meanwhile: nothing to replace
        d.current = { instance: cmd.instance, generation: f.instance.generation, restarts: f.instance.restarts, deadline: cmd.deadline }
        return this.capsules.apply({ op: 'capsule.restart', req: cmd.req, name: cmd.capsule, instances: [cmd.instance] })
      }
      case 'deployment.replaced': {
        const d = this.runningDeployment(cmd.capsule, cmd.id)
        if (d?.current?.instance !== cmd.instance) return { ok: false, reason: 'stale rollout step' }
        d.replaced.push(cmd.instance)
        d.current = null
        return { ok: true }
      }
      case 'deployment.finish': {
        const d = this.runningDeployment(cmd.capsule, cmd.id)
        if (d === undefined) return { ok: false, reason: 'stale rollout step' }
        d.status = cmd.status
        d.reason = cmd.reason
        const failed = d.current?.instance
        d.current = null
        if (cmd.status === 'failed') {
          // The previous spec again, so the failed instance and any later placement run what the others run.
          const r = this.capsules.apply({ op: 'capsule.update', req: cmd.req, spec: d.previousSpec })
          if (r.ok && failed !== undefined && this.capsules.instance(failed) !== undefined) this.capsules.apply({ op: 'capsule.restart', req: cmd.req, name: cmd.capsule, instances: [failed] })
        }
        return { ok: true }
      }
      case 'drain.start': {
        this.capsules.apply({ op: 'node.eligibility', req: cmd.req, id: cmd.node, eligible: false, reason: 'drained' })
        const moving: string[] = []
        for (const c of this.capsules.list()) {
          if (c.desired !== 'run') continue
          for (const i of c.instances) {
            if (i.node !== cmd.node || !['pending', 'pulling', 'running'].includes(i.state)) continue
            if (this.capsules.apply({ op: 'capsule.migrate', req: cmd.req, instance: i.name, generation: i.generation }).ok) moving.push(i.name)
          }
        }
        this.drains.delete(cmd.node) // re-inserted last: the oldest record is evicted first
        this.drains.set(cmd.node, { node: cmd.node, status: 'running', deadline: cmd.deadline, moving, released: [] })
        this.evictDrains()
        return { ok: true }
      }
      case 'drain.finish': {
        const d = this.drains.get(cmd.node)
        if (d === undefined || d.status !== 'running') return { ok: false, reason: `no drain of ${cmd.node} is running` }
        if (cmd.release) {
          for (const c of this.capsules.list()) {
            for (const i of c.instances) {
              if (i.previous?.node === cmd.node && this.capsules.apply({ op: 'capsule.release', req: cmd.req, instance: i.name }).ok) d.released.push(i.name)
            }
          }
        }
        d.status = 'done'
        return { ok: true }
      }
    }
  }

  private runningDeployment (capsule: string, id: string): DeploymentRecord | undefined {
    const d = this.deployments.get(capsule)
    return d?.id === id && d.status === 'running' ? d : undefined
  }

  private evictDrains (): void {
    for (const [node, d] of this.drains) {
      if (this.drains.size <= MAX_DRAINS) return
      if (d.status === 'done') this.drains.delete(node)
    }
  }

  toSnapshot (): { deployments: DeploymentRecord[], drains: DrainRecord[] } {
    return { deployments: [...this.deployments.values()].sort((a, b) => a.capsule < b.capsule ? -1 : 1), drains: [...this.drains.values()] }
  }

  restore (raw: unknown): void {
    const s = (raw ?? {}) as { deployments?: DeploymentRecord[], drains?: DrainRecord[] }
    this.deployments = new Map((s.deployments ?? []).map(d => [d.capsule, d]))
    this.drains = new Map((s.drains ?? []).map(d => [d.node, d]))
  }
}
