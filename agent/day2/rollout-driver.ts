// The leader's side of rollouts and drains (Nomad's deployment watcher):
// each round it reads the running records in the Raft state and issues the
// next command — restart the next instance, mark it replaced once it runs
// healthy, stop on a failure, finish a drain when everything moved or its
// deadline passed. All progress is in the records, so a new leader resumes
// where the last one stopped and no CLI needs to stay connected.
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import type { CapsuleTable } from '../state/capsules.js'
import type { DeploymentRecord, DrainRecord, RolloutTable } from '../state/rollouts.js'
import type { Logger } from '../logger.js'
import { drainRemaining } from './drain.js'
import { RoundLoop } from '../round-loop.js'

export const ROLLOUT_INTERVAL_MS = 300

export interface RolloutDriverInit {
  isLeader: () => boolean
  capsules: () => CapsuleTable
  rollouts: () => RolloutTable
  write: (cmd: CommandInput, signal?: AbortSignal) => Promise<CommandResult>
  now?: () => number
  log: Logger
}

/** The next command a deployment needs, or undefined while it waits. Pure: the driver's whole judgement. */
export function nextDeploymentStep (d: DeploymentRecord, table: CapsuleTable, now: number): CommandInput | undefined {
  const finish = (status: 'succeeded' | 'failed', reason: string | null): CommandInput => ({ op: 'deployment.finish', capsule: d.capsule, id: d.id, status, reason })
  if (table.get(d.capsule) === undefined) return undefined // removed: forgotten with it
  const cur = d.current
  if (cur === null) {
    const next = d.pending[0]
    if (next === undefined) return finish('succeeded', null)
    return { op: 'deployment.step', capsule: d.capsule, id: d.id, instance: next, deadline: now + d.timeoutMs }
  }
  const f = table.instance(cur.instance)
  const checked = table.get(d.capsule)?.spec.health !== undefined
  const fail = (why: string): CommandInput => {
    const kept = d.pending.filter(n => table.instance(n) !== undefined)
    return finish('failed', `${cur.instance} ${why}; ${kept.length > 0 ? `${kept.join(', ')} still run the previous version` : 'no other instance runs the previous version'}; the spec is back to the previous one`)
  }
  if (f === undefined) return fail('is gone')
  const i = f.instance
  if (i.state === 'failed' || i.state === 'exited') return fail(`${i.state} (${i.reason ?? 'no reason'})`)
  // A crash of the new version is enough: waiting out its restart back-off would only delay the verdict.
  if (i.restarts > cur.restarts) return fail(`crashed after the update (${i.exitCode !== null ? `exit code ${i.exitCode}` : i.reason ?? 'no exit code'})`)
  const placedAfresh = i.generation > cur.generation
  if (placedAfresh && i.state === 'running' && (!checked || i.health === 'healthy')) return { op: 'deployment.replaced', capsule: d.capsule, id: d.id, instance: cur.instance }
  if (now > cur.deadline) return fail(`was not healthy within ${d.timeoutMs} ms (${i.state}${i.health != null ? `/${i.health}` : ''}${i.reason !== null ? `: ${i.reason}` : ''})`)
  return undefined
}

/** The next command a drain needs: finished once nothing runs on or moves off its node, released at its deadline. */
export function nextDrainStep (d: DrainRecord, table: CapsuleTable, now: number): CommandInput | undefined {
  if (drainRemaining(table, d.node).length === 0) return { op: 'drain.finish', node: d.node, release: false }
  if (now >= d.deadline) return { op: 'drain.finish', node: d.node, release: true }
  return undefined
}

export class RolloutDriver {
  private readonly loop = new RoundLoop(ROLLOUT_INTERVAL_MS, async (signal) => await this.round(signal))

  constructor (private readonly o: RolloutDriverInit) {}

  start (): void { this.loop.start() }
  stop (): void { this.loop.stop() }
  /** A round soon: an instance's state or a record changed. */
  kick (): void { this.loop.kick() }

  /** Issues every step the running records need now; true when one was committed (the next may follow at once). */
  private async round (signal: AbortSignal): Promise<boolean> {
    if (!this.o.isLeader()) return false
    let stepped = false
    try {
      const now = (this.o.now ?? Date.now)()
      const table = this.o.capsules()
      const { deployments, drains } = this.o.rollouts().running()
      const steps = [...deployments.map(d => nextDeploymentStep(d, table, now)), ...drains.map(d => nextDrainStep(d, table, now))]
      for (const cmd of steps) {
        if (cmd === undefined || !this.o.isLeader()) continue
        const r = await this.o.write(cmd, signal)
        if (!r.ok) { this.o.log.debug({ op: cmd.op, reason: r.reason }, 'rollout step refused; the next round looks again'); continue }
        this.o.log.info({ op: cmd.op, ...('capsule' in cmd ? { capsule: cmd.capsule } : {}), ...('node' in cmd ? { node: cmd.node } : {}), ...('instance' in cmd ? { instance: cmd.instance } : {}) }, 'rollout step')
        stepped = true
      }
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'rollout round failed; retrying')
    }
    return stepped && this.o.isLeader()
  }
}
