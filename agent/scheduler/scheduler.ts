// The scheduler loop, active only on the Raft leader. Each round it reads the
// committed capsules and the gossiped node metadata, takes instances off
// nodes that left or stayed dead past the grace period, and places the
// unplaced ones — each placement a conditional Raft command, so a new leader
// resumes from the committed state and nothing is placed twice.
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { CapsuleTable } from '../state/capsules.js'
import { CapacityView, type Allocation, type NodeCapacity, type PortDemand } from './placement.js'
import type { CapsuleSpec } from './spec.js'
import type { Logger } from '../logger.js'

export const SCHEDULER_INTERVAL_MS = 250
/** Placements committed per round at most (bounded work per round). */
export const MAX_PLACEMENTS_PER_ROUND = 256

export interface SchedulerNode extends NodeCapacity {
  state: 'alive' | 'suspect' | 'dead' | 'left'
}

export interface SchedulerInit {
  isLeader: () => boolean
  capsules: () => CapsuleTable
  nodes: () => SchedulerNode[]
  write: (cmd: CommandInput, signal?: AbortSignal) => Promise<CommandResult>
  /** How long a dead node keeps its instances before they are placed elsewhere. */
  deadGraceMs: number
  log: Logger
}

export class Scheduler {
  private timer: NodeJS.Timeout | undefined
  private busy = false
  /** A kick came while a round ran: run another right after it (a submit must not wait for the timer). */
  private again = false
  private readonly deadSince = new Map<string, number>()
  private readonly ac = new AbortController()
  /** Placements this node's scheduler committed (while it led), for /metrics. */
  placements = 0

  constructor (private readonly o: SchedulerInit) {}

  start (): void {
    this.timer = setInterval(() => { void this.round() }, SCHEDULER_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    this.ac.abort()
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  /** Nudges a round soon (after a submit), instead of waiting for the timer. */
  kick (): void {
    if (this.busy) { this.again = true; return }
    setImmediate(() => { void this.round() })
  }

  async round (): Promise<void> {
    if (this.ac.signal.aborted) return
    if (this.busy) { this.again = true; return }
    const now = Date.now()
    const nodes = this.o.nodes()
    for (const n of nodes) {
      if (n.state === 'dead') { if (!this.deadSince.has(n.id)) this.deadSince.set(n.id, now) } else this.deadSince.delete(n.id)
    }
    if (!this.o.isLeader()) return
    this.busy = true
    try {
      const table = this.o.capsules()
      const byId = new Map(nodes.map(n => [n.id, n]))
      const usable = nodes.filter(n => n.state === 'alive' && table.isEligible(n.id))
      const allocations: Allocation[] = []
      const lost: Array<{ instance: string, generation: number, reason: string }> = []
      const unplaced: Array<{ capsule: ReturnType<CapsuleTable['list']>[number], instance: string, generation: number, reason: string | null }> = []
      const finished: string[] = []
      for (const c of table.list()) {
        if (c.spec.autoRemove === true && c.instances.every(i => i.node !== null && (i.state === 'exited' || i.state === 'failed'))) finished.push(c.spec.name)
        for (const i of c.instances) {
          // A placement being left (a drain) holds its node's resources until it stops.
          if (i.previous != null) allocations.push({ node: i.previous.node, capsule: c.spec.name, cpu: c.spec.resources.cpu, memoryBytes: c.spec.resources.memoryBytes, gpuIndexes: i.previous.gpuIndexes, ports: i.previous.ports })
          if (i.node !== null) {
            const n = byId.get(i.node)
            const gone = n === undefined || n.state === 'left' || (n.state === 'dead' && now - (this.deadSince.get(n.id) ?? now) >= replaceAfterMs(c.spec, this.o.deadGraceMs))
            if (gone && c.desired === 'run') { lost.push({ instance: i.name, generation: i.generation, reason: `node ${n?.id ?? i.node} ${n?.state ?? 'is gone'}; rescheduling` }); continue }
            if (['pending', 'pulling', 'running'].includes(i.state)) {
              allocations.push({ node: i.node, capsule: c.spec.name, cpu: c.spec.resources.cpu, memoryBytes: c.spec.resources.memoryBytes, gpuIndexes: i.gpuIndexes, ports: i.ports })
            }
          } else if (c.desired === 'run' && (i.state === 'pending' || i.state === 'lost')) {
            unplaced.push({ capsule: c, instance: i.name, generation: i.generation, reason: i.reason })
          }
        }
      }
      for (const l of lost) {
        this.o.log.info({ instance: l.instance, reason: l.reason }, 'scheduler: instance lost')
        await this.o.write({ op: 'capsule.unplace', instance: l.instance, generation: l.generation, state: 'lost', reason: l.reason }, this.ac.signal)
      }
      for (const name of finished) {
        this.o.log.info({ capsule: name }, 'scheduler: removing a finished --rm capsule')
        await this.o.write({ op: 'capsule.remove', name }, this.ac.signal)
      }
      if (unplaced.length === 0) return
      const view = new CapacityView(usable, allocations)
      // An instance that would fit only on a node under suspicion gets no verdict yet: SWIM decides within
      // seconds whether that node is alive, and `run` keeps waiting instead of saying it cannot be placed.
      const suspect = nodes.filter(n => n.state === 'suspect' && table.isEligible(n.id))
      const hopeful = suspect.length > 0 ? new CapacityView([...usable, ...suspect], allocations) : undefined
      let placed = 0
      for (const u of unplaced) {
        if (placed >= MAX_PLACEMENTS_PER_ROUND || !this.o.isLeader()) break
        const s = u.capsule.spec
        const demand = { capsule: s.name, cpu: s.resources.cpu, memoryBytes: s.resources.memoryBytes, gpus: s.resources.gpus, on: s.on, strategy: s.strategy, hostNetwork: s.network === 'host', gaming: s.gaming, ports: portDemands(s) }
        const r = view.place(demand)
        if (r.ok) {
          const w = await this.o.write({ op: 'capsule.place', instance: u.instance, node: r.node, gpuIndexes: r.gpuIndexes, ports: r.ports, generation: u.generation }, this.ac.signal)
          if (w.ok) this.placements++
          placed++
        } else if (u.reason !== r.reason && hopeful?.place(demand).ok !== true) {
          await this.o.write({ op: 'capsule.pending', instance: u.instance, reason: r.reason }, this.ac.signal)
        }
      }
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'scheduler round failed; retrying')
    } finally {
      this.busy = false
      if (this.again) { this.again = false; this.kick() }
    }
  }
}

/** A capsule's host ports as the placement core sees them: on the host network the container port is the host port. */
export function portDemands (s: CapsuleSpec): PortDemand[] {
  return s.ports.map(p => ({ host: s.network === 'host' ? p.container : p.host, container: p.container, proto: p.proto }))
}

/** Time for a cut-off node to fence a capsule after its lease ran out: the watchdog's poll and the kill. */
export const FENCE_MARGIN_MS = 2000

/**
 * How long an instance on a dead node waits before it is placed elsewhere:
 * the dead-node grace, and for a capsule its node stops when cut off, at
 * least that grace plus the margin — so the old copy is stopped first.
 */
export function replaceAfterMs (spec: CapsuleSpec, deadGraceMs: number): number {
  const stop = spec.disconnect?.stopAfterMs
  return stop === undefined ? deadGraceMs : Math.max(deadGraceMs, stop + FENCE_MARGIN_MS)
}
