// Raft's figures for /metrics, kept as plain numbers (metrics.ts renders them
// with prom-client): how long a proposal takes to commit and apply, how many
// entries each synced batch carries and how long its fsync takes, how many
// proposals were forwarded to the leader, and how often leadership changed.
import type { HistogramSnapshot } from '../metrics.js'

/** A fixed-bucket histogram, as Prometheus defines one: `le` upper bounds, plus +Inf. */
export class Histogram {
  private readonly counts: number[]
  private sum = 0
  private count = 0

  constructor (readonly bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++) if (!((bounds[i] as number) > (bounds[i - 1] as number))) throw new RangeError(`histogram bounds must increase: ${bounds.join(', ')}`)
    this.counts = new Array<number>(bounds.length + 1).fill(0)
  }

  observe (v: number): void {
    let i = 0
    while (i < this.bounds.length && v > (this.bounds[i] as number)) i++
    this.counts[i] = (this.counts[i] as number) + 1
    this.sum += v
    this.count++
  }

  /** Cumulative counts per bound (the last one is +Inf, equal to count). */
  snapshot (): HistogramSnapshot {
    let acc = 0
    const cumulative = this.counts.map(c => (acc += c))
    return { bounds: [...this.bounds], cumulative, sum: this.sum, count: this.count }
  }
}

/** Commit latency: a leader on a local disk commits in about a millisecond; a slow disk or a lost quorum shows at the top. */
export const COMMIT_SECONDS_BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
/** fsync of one batch: tens of microseconds on a battery-backed disk, tens of milliseconds on a cheap SSD. */
export const FSYNC_SECONDS_BOUNDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
/** Entries per synced batch: 1 with one writer; many under load when proposals are batched. */
export const BATCH_ENTRIES_BOUNDS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]

export class RaftMetrics {
  /** Proposal to applied, for proposals made on this node (its own writes when it leads, and forwarded ones it served). */
  readonly commitSeconds = new Histogram(COMMIT_SECONDS_BOUNDS)
  /** Log entries per synced storage batch (batches that carry entries). */
  readonly batchEntries = new Histogram(BATCH_ENTRIES_BOUNDS)
  /** Duration of each synced storage batch (every one, entries or only state). */
  readonly fsyncSeconds = new Histogram(FSYNC_SECONDS_BOUNDS)
  /** Proposals this node sent to the leader, and proposals it served as leader for others. */
  readonly forwarded = { sent: 0, served: 0 }

  /**
   * Leaders this node has seen take over: each new (leader, term) it learns
   * of, so a re-election of the same node counts and a follower that only
   * lost sight of its leader for a while (no leader known, then the same
   * one) does not. Flapping leadership shows as a steep rate on every node.
   */
  leaderChanges = 0
  private seen: { leader: string, term: number } | null = null

  /** For RaftNode's leaderChange event. */
  readonly onLeaderChange = (c: { leader: string | null, term: number }): void => {
    if (c.leader === null || (this.seen !== null && this.seen.leader === c.leader && this.seen.term === c.term)) return
    // The first leader a starting node learns of is a change too: it was elected while this node was away.
    this.seen = { leader: c.leader, term: c.term }
    this.leaderChanges++
  }

  /** For RaftStorage's onSynced option. */
  readonly onSynced = (s: { entries: number, seconds: number }): void => {
    this.fsyncSeconds.observe(s.seconds)
    if (s.entries > 0) this.batchEntries.observe(s.entries)
  }

  histograms (): Array<{ name: string, help: string, read: () => HistogramSnapshot }> {
    return [
      { name: 'bolt_raft_commit_seconds', help: 'Time from a proposal on this node to its entry committed and applied', read: () => this.commitSeconds.snapshot() },
      { name: 'bolt_raft_batch_entries', help: 'Log entries per synced Raft storage batch', read: () => this.batchEntries.snapshot() },
      { name: 'bolt_raft_fsync_seconds', help: 'Duration of each synced Raft storage batch (write and fsync)', read: () => this.fsyncSeconds.snapshot() }
    ]
  }

  gauges (): Array<{ name: string, help: string, labels: string[], read: () => Array<{ labels: Record<string, string>, value: number }> }> {
    return [{
      name: 'bolt_raft_leader_changes_total',
      help: 'Raft leaders this node has seen take over (each new leader or term; a counter)',
      labels: [],
      read: () => [{ labels: {}, value: this.leaderChanges }]
    }, {
      name: 'bolt_raft_proposals_forwarded_total',
      help: 'Proposals forwarded to the leader: sent by this node, or served by it as leader',
      labels: ['direction'],
      read: () => [{ labels: { direction: 'sent' }, value: this.forwarded.sent }, { labels: { direction: 'served' }, value: this.forwarded.served }]
    }]
  }
}
