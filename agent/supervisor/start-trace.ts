// When each step of an instance's start happened on the node that runs it:
// the Raft applies (submit committed, placement, running reported) and the
// supervisor's and runtime's own steps in between. `inspect` shows them, and
// the run-vs-containerd scenario turns them into its time breakdown.
import type { CommandInput } from '../state/cluster-state.js'
import type { CapsuleTable } from '../state/capsules.js'

/** The steps, in the order a start goes through them. */
export const START_STEPS = ['committed', 'placed', 'supervisor', 'imageReady', 'bundleReady', 'launched', 'started', 'running', 'reported'] as const
export type StartStep = typeof START_STEPS[number]

/** Instances whose starts are kept (the oldest go first). */
export const MAX_TRACED_STARTS = 128

/** Epoch milliseconds with the sub-millisecond part, comparable across processes on one machine. */
export function preciseNow (): number {
  return performance.timeOrigin + performance.now()
}

export class StartTrace {
  private readonly starts = new Map<string, Partial<Record<StartStep, number>>>()
  /** Submits committed here, by instance name, until the instance is placed on this node (or not). */
  private readonly committed = new Map<string, number>()

  /** Records `step` of the start of `instance` generation `generation`, once (the first time wins). */
  mark (instance: string, generation: number, step: StartStep, at = preciseNow()): void {
    const key = `${instance}.g${generation}`
    let t = this.starts.get(key)
    if (t === undefined) {
      t = {}
      this.starts.set(key, t)
      if (this.starts.size > MAX_TRACED_STARTS) this.starts.delete(this.starts.keys().next().value as string)
    }
    t[step] ??= at
  }

  /** The steps recorded for this start, or undefined when it did not start here. */
  get (instance: string, generation: number): Partial<Record<StartStep, number>> | undefined {
    return this.starts.get(`${instance}.g${generation}`)
  }

  /** Marks what an applied command (`ok`: it took effect) tells about starts on node `self`. */
  applied (cmd: CommandInput, ok: boolean, self: string, table: CapsuleTable): void {
    if (!ok) return
    const now = preciseNow()
    if (cmd.op === 'capsule.create') {
      for (const i of table.get(cmd.spec.name)?.instances ?? []) {
        this.committed.set(i.name, now)
        if (this.committed.size > MAX_TRACED_STARTS) this.committed.delete(this.committed.keys().next().value as string)
      }
    } else if (cmd.op === 'capsule.place' && cmd.node === self) {
      const c = this.committed.get(cmd.instance)
      this.committed.delete(cmd.instance)
      // Placing bumps the generation: the start runs as the next one.
      const gen = cmd.generation + 1
      if (c !== undefined) this.mark(cmd.instance, gen, 'committed', c)
      this.mark(cmd.instance, gen, 'placed', now)
    } else if (cmd.op === 'capsule.report' && cmd.node === self && cmd.state === 'running') {
      this.mark(cmd.instance, cmd.generation, 'running', now)
    }
  }
}
