// RaftNode's options: the named defaults, and resolveNodeOptions, which
// checks them and fills in every default once, when the node is built (the
// core's share through the core's own resolveOptions).
import type { LogStorage } from './storage/types.js'
import type { Message, NormalEntry } from './types.js'
import { RaftConfigError } from './errors.js'
import { resolveOptions, type ResolvedOptions } from './core/config.js'

/** Milliseconds per tick; with 10 election ticks the election timeout is 1-2 s (hashicorp/raft uses 1 s). */
export const DEFAULT_TICK_MS = 100
/** Applied entries beyond the last snapshot before the log is compacted. */
export const DEFAULT_SNAPSHOT_THRESHOLD = 10_000
/** Entries kept below a new snapshot so followers a little behind catch up from the log (etcd's default). */
export const DEFAULT_SNAPSHOT_CATCHUP_ENTRIES = 5000
/** Proposals and conf changes waiting to be applied; more are refused (back-pressure). */
export const DEFAULT_MAX_PENDING_PROPOSALS = 8192
/** A read or leadership transfer not answered within this many election timeouts fails. */
export const REQUEST_TIMEOUT_ELECTIONS = 2

/**
 * Starts calling `tick` every `ms` milliseconds and returns what stops it.
 * The default is an unref'd setInterval; a test passes its own to drive
 * the node's time itself (a fake clock: no test waits for a timer).
 */
export type Ticker = (tick: (owed?: number) => void, ms: number) => () => void

export const intervalTicker: Ticker = (tick, ms) => {
  const timer = setInterval(tick, ms)
  timer.unref()
  return () => { clearInterval(timer) }
}

/**
 * An interval that passes tick() the periods that passed since its last
 * call (at least 1): on a loaded machine a 20 ms timer fires late, and
 * counted per callback an election timeout of 50 ticks stretched to 1.3-2
 * times its length (issue #25). RaftNode counts owed ticks for a follower
 * only (see its tick()).
 */
export const wallClockTicker: Ticker = (tick, ms) => {
  let due = performance.now() + ms
  const timer = setInterval(() => {
    const now = performance.now()
    // A callback a fraction of a millisecond early (the loop's clock is coarser) counts at the next one.
    if (now < due) return
    const owed = 1 + Math.floor((now - due) / ms)
    due += owed * ms
    tick(owed)
  }, ms)
  timer.unref()
  return () => { clearInterval(timer) }
}

export interface RaftNodeOptions {
  id: string
  storage: LogStorage
  /** Bootstrap a new cluster with these voters when the storage is empty (`init`: [id]). Omit to join. */
  bootstrap?: string[]
  electionTicks?: number
  /** See RaftCoreOptions.electionJitterTicks (default: electionTicks). */
  electionJitterTicks?: number
  /** See RaftCoreOptions.campaignRetryTicks (default 0: off). */
  campaignRetryTicks?: number
  heartbeatTicks?: number
  /** See RaftCoreOptions.learnerHeartbeatTicks (default: heartbeatTicks). */
  learnerHeartbeatTicks?: number
  tickMs?: number
  /** See RaftCoreOptions.deferCommitBroadcast (default false). */
  deferCommitBroadcast?: boolean
  preVote?: boolean
  checkQuorum?: boolean
  maxSizePerMsg?: number
  maxInflightMsgs?: number
  snapshotChunkBytes?: number
  snapshotThreshold?: number
  snapshotCatchUpEntries?: number
  maxPendingProposals?: number
  /** What calls tick() every tickMs (default intervalTicker). */
  ticker?: Ticker
  /** Defaults to Math.random; the simulator drives RaftCore directly with a seeded one. */
  random?: () => number
  /** Delivers a message to a peer; must not throw (drop on failure: Raft retries). */
  send: (to: string, msg: Message) => void
  /** Applies a committed entry to the state machine, in log order. */
  apply: (entry: NormalEntry) => Promise<void> | void
  /** Serializes the state machine as of the last applied entry. */
  snapshot: () => Promise<Uint8Array>
  /** Replaces the state machine with a snapshot's data. */
  restore: (data: Uint8Array) => Promise<void> | void
  /** Marks the Ready loop's steps as they happen, for a write's timeline (see TracePoint). Off when absent; must not throw. */
  trace?: (point: TracePoint, index: number) => void
}

/**
 * Steps of the Ready loop, marked through RaftNodeOptions.trace: `ready` (a
 * Ready was taken; index: its first entry's, 0 without entries), `persist`
 * and `persisted` around its write to storage, `sent` once its messages were
 * handed to `send`, `applied` once its committed entries were (index: the
 * last one's). A follower's `sent` comes after its `persisted`; a leader's
 * may come before (its appends leave while it writes).
 */
export type TracePoint = 'ready' | 'persist' | 'persisted' | 'sent' | 'applied'

/** RaftNodeOptions with every default filled in; `core` is what RaftCore is built with. */
export interface ResolvedNodeOptions {
  id: string
  storage: LogStorage
  bootstrap: string[] | undefined
  tickMs: number
  ticker: Ticker
  snapshotThreshold: number
  snapshotCatchUpEntries: number
  maxPendingProposals: number
  core: ResolvedOptions
  send: RaftNodeOptions['send']
  apply: RaftNodeOptions['apply']
  snapshot: RaftNodeOptions['snapshot']
  restore: RaftNodeOptions['restore']
  trace: RaftNodeOptions['trace']
}

/** Checks `o` and resolves its defaults; throws RaftConfigError naming the first bad option. Does not copy into `o`. */
export function resolveNodeOptions (o: RaftNodeOptions): ResolvedNodeOptions {
  const tickMs = o.tickMs ?? DEFAULT_TICK_MS
  if (!Number.isFinite(tickMs) || tickMs <= 0) throw new RaftConfigError(`raft: tickMs must be a positive number, got ${tickMs}`)
  const core = resolveOptions({
    id: o.id,
    storage: o.storage,
    random: o.random ?? Math.random,
    ...(o.electionTicks === undefined ? {} : { electionTicks: o.electionTicks }),
    ...(o.heartbeatTicks === undefined ? {} : { heartbeatTicks: o.heartbeatTicks }),
    ...(o.learnerHeartbeatTicks === undefined ? {} : { learnerHeartbeatTicks: o.learnerHeartbeatTicks }),
    ...(o.electionJitterTicks === undefined ? {} : { electionJitterTicks: o.electionJitterTicks }),
    ...(o.campaignRetryTicks === undefined ? {} : { campaignRetryTicks: o.campaignRetryTicks }),
    ...(o.deferCommitBroadcast === undefined ? {} : { deferCommitBroadcast: o.deferCommitBroadcast }),
    ...(o.preVote === undefined ? {} : { preVote: o.preVote }),
    ...(o.checkQuorum === undefined ? {} : { checkQuorum: o.checkQuorum }),
    ...(o.maxSizePerMsg === undefined ? {} : { maxSizePerMsg: o.maxSizePerMsg }),
    ...(o.maxInflightMsgs === undefined ? {} : { maxInflightMsgs: o.maxInflightMsgs }),
    ...(o.snapshotChunkBytes === undefined ? {} : { snapshotChunkBytes: o.snapshotChunkBytes }),
  })
  return {
    id: o.id,
    storage: o.storage,
    bootstrap: o.bootstrap,
    tickMs,
    ticker: o.ticker ?? intervalTicker,
    snapshotThreshold: o.snapshotThreshold ?? DEFAULT_SNAPSHOT_THRESHOLD,
    snapshotCatchUpEntries: o.snapshotCatchUpEntries ?? DEFAULT_SNAPSHOT_CATCHUP_ENTRIES,
    maxPendingProposals: o.maxPendingProposals ?? DEFAULT_MAX_PENDING_PROPOSALS,
    core,
    send: o.send,
    apply: o.apply,
    snapshot: o.snapshot,
    restore: o.restore,
    trace: o.trace,
  }
}
