// Capsules in the replicated state: specs, their instances, where each is
// placed and what its node last reported. Every change is a command in the
// Raft log; commands that would place an instance twice or apply a stale
// report carry the instance's generation and are refused when it moved on,
// so a new leader or a late supervisor can't double-place or resurrect.
import { z } from 'zod'
import { AssignedPortSchema, CapsuleSpecSchema, InstanceStateSchema, instanceName, MAX_PORTS, MAX_REPLICAS, type AssignedPort, type CapsuleSpec, type InstanceState } from '../scheduler/spec.js'
import { HealthStateSchema, type HealthState } from '../services/health-spec.js'
import { WAITING_FOR_SCHEDULER } from './instance-reasons.js'

export interface InstanceRecord {
  name: string
  index: number
  node: string | null
  gpuIndexes: number[]
  /** Host ports this placement holds on its node (empty while unplaced). */
  ports: AssignedPort[]
  state: InstanceState
  reason: string | null
  exitCode: number | null
  restarts: number
  /** Bumped on every placement; reports and moves must name the current one. */
  generation: number
  /** The health check's verdict while running; null without a check (absent in older records). */
  health?: HealthState | null
  /**
   * While the instance moves off a drained node: the placement it leaves,
   * which keeps running until the new one is running and healthy (then
   * cleared on apply) or the drain's deadline releases it.
   */
  previous?: PreviousPlacement | null
}

export interface PreviousPlacement { node: string, generation: number, gpuIndexes: number[], ports: AssignedPort[] }

/** At most this many health transitions in one `instance.health` command. */
export const MAX_HEALTH_UPDATES = 256

export interface CapsuleRecord {
  spec: CapsuleSpec
  desired: 'run' | 'stop'
  instances: InstanceRecord[]
}

const Gen = z.number().int().nonnegative()
/** One schema per capsule command; commands.ts gives each its size bound and who may issue it. */
export const CapsuleCommandSchemas = {
  'capsule.create': z.object({ op: z.literal('capsule.create'), req: z.string().max(64), spec: CapsuleSpecSchema }),
  'capsule.place': z.object({ op: z.literal('capsule.place'), req: z.string().max(64), instance: z.string().max(128), node: z.string().max(128), gpuIndexes: z.array(z.number().int()).max(64), ports: z.array(AssignedPortSchema).max(MAX_PORTS).default([]), generation: Gen }),
  'capsule.unplace': z.object({ op: z.literal('capsule.unplace'), req: z.string().max(64), instance: z.string().max(128), generation: Gen, state: z.enum(['pending', 'lost']), reason: z.string().max(512) }),
  'capsule.pending': z.object({ op: z.literal('capsule.pending'), req: z.string().max(64), instance: z.string().max(128), reason: z.string().max(512) }),
  'capsule.report': z.object({ op: z.literal('capsule.report'), req: z.string().max(64), instance: z.string().max(128), node: z.string().max(128), generation: Gen, state: InstanceStateSchema, exitCode: z.number().int().nullable(), reason: z.string().max(512).nullable(), restarts: z.number().int().nonnegative() }),
  'capsule.stop': z.object({ op: z.literal('capsule.stop'), req: z.string().max(64), name: z.string().max(128) }),
  'capsule.remove': z.object({ op: z.literal('capsule.remove'), req: z.string().max(64), name: z.string().max(128) }),
  /** `restart`: the named instances (all when absent) are placed afresh, their old runs stopped; a stopped capsule runs again. */
  'capsule.restart': z.object({ op: z.literal('capsule.restart'), req: z.string().max(64), name: z.string().max(128), instances: z.array(z.string().max(128)).max(MAX_REPLICAS).optional() }),
  /** `scale`: instances added (pending) or the highest-numbered ones removed. */
  'capsule.scale': z.object({ op: z.literal('capsule.scale'), req: z.string().max(64), name: z.string().max(128), replicas: z.number().int().min(1).max(MAX_REPLICAS) }),
  /** `up` of an edited stack: the new spec (same name), replicas resized; running instances keep their spec until restarted. */
  /** `node drain`: place the instance elsewhere while the current placement keeps running (`previous`). */
  'capsule.migrate': z.object({ op: z.literal('capsule.migrate'), req: z.string().max(64), instance: z.string().max(128), generation: Gen }),
  /** A drain's deadline, or `leave`: the previous placement stops whether or not its replacement is healthy. */
  'capsule.release': z.object({ op: z.literal('capsule.release'), req: z.string().max(64), instance: z.string().max(128) }),
  /** `node eligibility` and `node drain`: whether the scheduler places new instances on a node. */
  'node.eligibility': z.object({ op: z.literal('node.eligibility'), req: z.string().max(64), id: z.string().max(128), eligible: z.boolean(), reason: z.string().max(256).default('') }),
  'capsule.update': z.object({ op: z.literal('capsule.update'), req: z.string().max(64), spec: CapsuleSpecSchema }),
  /**
   * Health transitions seen by one node's probes, batched: only changes are
   * written, coalesced per instance, so a probe every second costs no Raft
   * entry while nothing changes.
   */
  'instance.health': z.object({ op: z.literal('instance.health'), req: z.string().max(64), node: z.string().max(128), updates: z.array(z.object({ instance: z.string().max(128), generation: Gen, health: HealthStateSchema })).min(1).max(MAX_HEALTH_UPDATES) })
}
type CapsuleOp = keyof typeof CapsuleCommandSchemas
export type CapsuleCommand = { [K in CapsuleOp]: z.infer<typeof CapsuleCommandSchemas[K]> }[CapsuleOp]


export type Result = { ok: true, value?: string | null } | { ok: false, reason: string, current?: string | null }

function initialHealth (spec: CapsuleSpec): HealthState | null {
  return spec.health !== undefined ? 'starting' : null
}

export class CapsuleTable {
  private capsules = new Map<string, CapsuleRecord>()
  /** Nodes the scheduler places nothing new on: id → why (drained, disabled). */
  private ineligible = new Map<string, string>()
  /** instance name → capsule name */
  private byInstance = new Map<string, string>()

  list (): CapsuleRecord[] { return [...this.capsules.values()] }
  get (name: string): CapsuleRecord | undefined { return this.capsules.get(name) }

  isEligible (node: string): boolean { return !this.ineligible.has(node) }
  ineligibleNodes (): Array<[string, string]> { return [...this.ineligible].sort((a, b) => a[0] < b[0] ? -1 : 1) }
  restoreIneligible (rows: Array<[string, string]>): void { this.ineligible = new Map(rows) }

  instance (name: string): { capsule: CapsuleRecord, instance: InstanceRecord } | undefined {
    const c = this.capsules.get(this.byInstance.get(name) ?? '')
    const i = c?.instances.find(x => x.name === name)
    return c !== undefined && i !== undefined ? { capsule: c, instance: i } : undefined
  }

  apply (cmd: CapsuleCommand): Result {
    switch (cmd.op) {
      case 'capsule.create': {
        if (this.capsules.has(cmd.spec.name)) return { ok: false, reason: `a capsule named ${cmd.spec.name} exists (rm it first)` }
        const r = cmd.spec.replicas
        const instances = Array.from({ length: r }, (_, i): InstanceRecord => ({ name: instanceName(cmd.spec.name, i, r), index: i, node: null, gpuIndexes: [], ports: [], state: 'pending', reason: WAITING_FOR_SCHEDULER, exitCode: null, restarts: 0, generation: 0 }))
        for (const i of instances) {
          if (this.byInstance.has(i.name)) return { ok: false, reason: `instance name ${i.name} is taken by capsule ${this.byInstance.get(i.name) ?? ''}` }
        }
        this.capsules.set(cmd.spec.name, { spec: cmd.spec, desired: 'run', instances })
        for (const i of instances) this.byInstance.set(i.name, cmd.spec.name)
        return { ok: true }
      }
      case 'capsule.place': {
        const f = this.instance(cmd.instance)
        if (f === undefined) return { ok: false, reason: 'no such instance' }
        const i = f.instance
        if (i.node !== null || i.generation !== cmd.generation || f.capsule.desired !== 'run') return { ok: false, reason: 'stale placement' }
        i.node = cmd.node
        i.gpuIndexes = cmd.gpuIndexes
        i.ports = cmd.ports
        i.generation++
        i.state = 'pending'
        i.reason = null
        i.exitCode = null
        i.health = initialHealth(f.capsule.spec)
        return { ok: true }
      }
      case 'capsule.unplace': {
        const f = this.instance(cmd.instance)
        if (f === undefined || f.instance.generation !== cmd.generation || f.instance.node === null) return { ok: false, reason: 'stale' }
        const i = f.instance
        i.node = null
        i.gpuIndexes = []
        i.ports = []
        i.state = cmd.state
        i.reason = cmd.reason
        i.ports = []
        i.health = initialHealth(f.capsule.spec)
        return { ok: true }
      }
      case 'capsule.pending': {
        const f = this.instance(cmd.instance)
        if (f === undefined || f.instance.node !== null) return { ok: false, reason: 'stale' }
        f.instance.reason = cmd.reason
        return { ok: true }
      }
      case 'capsule.report': {
        const f = this.instance(cmd.instance)
        if (f === undefined) return { ok: false, reason: 'no such instance' }
        const i = f.instance
        if (i.node !== cmd.node || i.generation !== cmd.generation) return { ok: false, reason: 'stale report' }
        // A (re)start is checked afresh: the last verdict was about the previous process.
        if (cmd.state !== 'running' || i.state !== 'running') i.health = initialHealth(f.capsule.spec)
        i.state = cmd.state
        i.exitCode = cmd.exitCode
        i.reason = cmd.reason
        i.restarts = cmd.restarts
        // A move off a drained node is done once the new placement runs (healthy, for a checked capsule).
        if (cmd.state === 'running' && f.capsule.spec.health === undefined) i.previous = null
        return { ok: true }
      }
      case 'capsule.stop': {
        const c = this.capsules.get(cmd.name)
        if (c === undefined) return { ok: false, reason: `no capsule named ${cmd.name}` }
        c.desired = 'stop'
        return { ok: true }
      }
      case 'capsule.remove': {
        const c = this.capsules.get(cmd.name)
        if (c === undefined) return { ok: false, reason: `no capsule named ${cmd.name}` }
        this.capsules.delete(cmd.name)
        for (const i of c.instances) this.byInstance.delete(i.name)
        return { ok: true }
      }
      case 'capsule.restart': {
        const c = this.capsules.get(cmd.name)
        if (c === undefined) return { ok: false, reason: `no capsule named ${cmd.name}` }
        const chosen = cmd.instances === undefined ? c.instances : c.instances.filter(i => cmd.instances?.includes(i.name))
        if (chosen.length === 0) return { ok: false, reason: `${cmd.name} has no instance named ${cmd.instances?.join(', ') ?? ''}` }
        c.desired = 'run'
        for (const i of chosen) {
          i.node = null
          i.gpuIndexes = []
          i.ports = []
          i.state = 'pending'
          i.reason = WAITING_FOR_SCHEDULER
          i.exitCode = null
          i.health = initialHealth(c.spec)
        }
        return { ok: true }
      }
      case 'capsule.migrate': {
        const f = this.instance(cmd.instance)
        if (f === undefined || f.instance.node === null || f.instance.generation !== cmd.generation || f.capsule.desired !== 'run') return { ok: false, reason: 'stale' }
        const i = f.instance
        i.previous = { node: i.node as string, generation: i.generation, gpuIndexes: i.gpuIndexes, ports: i.ports }
        i.node = null
        i.gpuIndexes = []
        i.ports = []
        i.state = 'pending'
        i.reason = 'moving off a drained node'
        i.health = initialHealth(f.capsule.spec)
        return { ok: true }
      }
      case 'capsule.release': {
        const f = this.instance(cmd.instance)
        if (f === undefined || f.instance.previous == null) return { ok: false, reason: 'stale' }
        f.instance.previous = null
        return { ok: true }
      }
      case 'node.eligibility': {
        if (cmd.eligible) this.ineligible.delete(cmd.id)
        else this.ineligible.set(cmd.id, cmd.reason)
        return { ok: true }
      }
      case 'capsule.scale': {
        const c = this.capsules.get(cmd.name)
        if (c === undefined) return { ok: false, reason: `no capsule named ${cmd.name}` }
        const r = this.resize(c, cmd.replicas)
        if (r.ok) c.spec = { ...c.spec, replicas: cmd.replicas }
        return r
      }
      case 'capsule.update': {
        const c = this.capsules.get(cmd.spec.name)
        if (c === undefined) return { ok: false, reason: `no capsule named ${cmd.spec.name}` }
        const r = this.resize(c, cmd.spec.replicas)
        if (r.ok) c.spec = cmd.spec
        return r
      }
      case 'instance.health': {
        let applied = 0
        for (const u of cmd.updates) {
          const f = this.instance(u.instance)
          // Only the node running this placement speaks for it, and only while it runs.
          if (f === undefined || f.instance.node !== cmd.node || f.instance.generation !== u.generation || f.instance.state !== 'running' || f.capsule.spec.health === undefined) continue
          f.instance.health = u.health
          if (u.health === 'healthy') f.instance.previous = null
          applied++
        }
        return applied > 0 ? { ok: true, value: String(applied) } : { ok: false, reason: 'stale health report' }
      }
    }
  }

  /** Adds instances `name-i` (pending) or removes the highest-numbered ones, so the capsule has `replicas`. */
  private resize (c: CapsuleRecord, replicas: number): Result {
    if (replicas < c.instances.length) {
      for (const i of c.instances.splice(replicas)) this.byInstance.delete(i.name)
      return { ok: true }
    }
    const added: InstanceRecord[] = []
    for (let idx = c.instances.length; idx < replicas; idx++) {
      // Existing instances keep their names (a single one is named after the capsule); new ones are name-i.
      const name = instanceName(c.spec.name, idx, Math.max(2, replicas))
      if (this.byInstance.has(name)) return { ok: false, reason: `instance name ${name} is taken by capsule ${this.byInstance.get(name) ?? ''}` }
      added.push({ name, index: idx, node: null, gpuIndexes: [], ports: [], state: 'pending', reason: WAITING_FOR_SCHEDULER, exitCode: null, restarts: 0, generation: 0, health: initialHealth(c.spec) })
    }
    for (const i of added) { c.instances.push(i); this.byInstance.set(i.name, c.spec.name) }
    return { ok: true }
  }

  toSnapshot (): CapsuleRecord[] {
    return [...this.capsules.values()].sort((a, b) => a.spec.name < b.spec.name ? -1 : 1)
  }

  restore (records: CapsuleRecord[]): void {
    this.capsules = new Map()
    this.byInstance = new Map()
    for (const r of records) {
      this.capsules.set(r.spec.name, r)
      for (const i of r.instances) {
        i.ports ??= [] // snapshots from before ports existed
        this.byInstance.set(i.name, r.spec.name)
      }
    }
  }
}
