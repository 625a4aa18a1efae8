// Batches one node's health transitions into `instance.health` Raft
// commands: the latest verdict per instance wins, a flush goes out shortly
// after the first change (coalescing a burst into one entry), and a failed
// write is retried with what is pending then, so a transition is never lost
// and never written twice for nothing.
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import { MAX_HEALTH_UPDATES } from '../state/capsules.js'
import type { HealthState } from './health-spec.js'

/** How long a first change waits for others before the batch is written. */
export const HEALTH_FLUSH_MS = 100
export const HEALTH_RETRY_MS = 1000
/** Pending instances kept at most (a node runs far fewer; beyond this the oldest is dropped). */
export const MAX_PENDING_HEALTH = 4096

export interface HealthReporterInit {
  node: string
  write: (cmd: CommandInput, signal?: AbortSignal) => Promise<CommandResult>
  onError?: (err: Error) => void
}

export class HealthReporter {
  private readonly pending = new Map<string, { generation: number, health: HealthState }>()
  private timer: NodeJS.Timeout | undefined
  private flushing = false
  private readonly ac = new AbortController()

  constructor (private readonly o: HealthReporterInit) {}

  report (instance: string, generation: number, health: HealthState): void {
    if (this.ac.signal.aborted) return
    this.pending.delete(instance) // re-inserted last: the map stays in arrival order for the bound below
    this.pending.set(instance, { generation, health })
    if (this.pending.size > MAX_PENDING_HEALTH) {
      const oldest = this.pending.keys().next().value
      if (oldest !== undefined) this.pending.delete(oldest)
    }
    this.schedule(HEALTH_FLUSH_MS)
  }

  stop (): void {
    this.ac.abort()
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.pending.clear()
  }

  private schedule (ms: number): void {
    if (this.timer !== undefined || this.flushing || this.ac.signal.aborted) return
    this.timer = setTimeout(() => { this.timer = undefined; void this.flush() }, ms)
    this.timer.unref()
  }

  private async flush (): Promise<void> {
    if (this.pending.size === 0 || this.ac.signal.aborted) return
    this.flushing = true
    const batch = [...this.pending].slice(0, MAX_HEALTH_UPDATES)
    for (const [instance] of batch) this.pending.delete(instance)
    let retry = false
    try {
      // A rejected batch is stale (moved or stopped instances): nothing to retry.
      await this.o.write({ op: 'instance.health', node: this.o.node, updates: batch.map(([instance, u]) => ({ instance, generation: u.generation, health: u.health })) }, this.ac.signal)
    } catch (err) {
      retry = !this.ac.signal.aborted
      // Put back what no newer verdict replaced meanwhile.
      if (retry) for (const [instance, u] of batch) if (!this.pending.has(instance)) this.pending.set(instance, u)
      this.o.onError?.(err as Error)
    } finally {
      this.flushing = false
    }
    if (this.pending.size > 0) this.schedule(retry ? HEALTH_RETRY_MS : HEALTH_FLUSH_MS)
  }
}
