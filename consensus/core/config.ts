// Options of the pure core, with named defaults and up-front validation.
import type { LogReader } from '../storage/types.js'
import { RaftConfigError } from '../errors.js'

/** Ticks without hearing from a leader before campaigning; the actual timeout is drawn from [n, 2n). */
export const DEFAULT_ELECTION_TICKS = 10
/** A leader heartbeats every n ticks; must be well below the election timeout (thesis §3.4). */
export const DEFAULT_HEARTBEAT_TICKS = 1
/** Bytes of entries per append message; bounds memory per message and per round trip. */
export const DEFAULT_MAX_SIZE_PER_MSG = 1024 * 1024
/** Appends in flight per follower in replicate state (pipelining depth). */
export const DEFAULT_MAX_INFLIGHT_MSGS = 256
/** Bytes in flight per follower; 0 means only the count bounds it. */
export const DEFAULT_MAX_INFLIGHT_BYTES = 32 * 1024 * 1024
/** Bytes of committed entries handed to the application per Ready. */
export const DEFAULT_MAX_COMMITTED_SIZE_PER_READY = 16 * 1024 * 1024
/** Bytes per InstallSnapshot chunk. */
export const DEFAULT_SNAPSHOT_CHUNK_BYTES = 256 * 1024
/** ReadIndex requests queued on a leader. */
export const DEFAULT_MAX_PENDING_READS = 4096
/**
 * Election timeouts without a leader from our configuration before a node
 * accepts leader messages from a peer it does not know as a voter (its
 * configuration may lag the cluster's); until then such messages are dropped.
 */
export const DEFAULT_STRANGER_ELECTIONS = 5
/** Largest snapshot a follower accepts (the chunks are buffered in memory). */
export const DEFAULT_MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024

export interface RaftCoreOptions {
  id: string
  storage: LogReader
  /** Uniform in [0, 1); injected so the simulator is deterministic. */
  random: () => number
  electionTicks?: number
  /**
   * The election timeout is drawn from [electionTicks, electionTicks +
   * electionJitterTicks) (default electionTicks, etcd's [n, 2n)). A narrower
   * spread shortens the worst failover; pre-vote keeps the rare tie cheap.
   */
  electionJitterTicks?: number
  heartbeatTicks?: number
  /**
   * A pre-candidate whose pre-vote has not won asks again after [n, 2n)
   * ticks instead of a whole election timeout (default 0: off, as in etcd).
   * Right after a leader dies, a voter whose ticks lag a little still counts
   * the old leader's lease and ignores the first pre-vote; that used to cost
   * another full timeout. A pre-vote changes no term, so asking again
   * disrupts nothing. A real candidacy keeps the full timeout (a retry
   * shorter than a vote's round trip would never let one finish) unless a
   * voter has refused it: then it is most likely a split vote (survivors
   * that timed out within one round trip of each other stand for the same
   * term), and it asks again, through pre-vote, after [n, 2n) ticks too.
   */
  campaignRetryTicks?: number
  /**
   * A leader heartbeats learners every n ticks (default: heartbeatTicks).
   * Learners never campaign, so their heartbeats only carry the commit
   * index and retry a lost append; a slower beat saves most of an idle
   * cluster's messages when most members are learners. Appends, and the
   * appends that announce a new commit index, still go out at once.
   */
  learnerHeartbeatTicks?: number
  /**
   * When the commit index moves, a follower with no new entries to receive
   * learns it on the next append or, at the latest, on the next tick,
   * instead of from an empty append sent at once (default false: at once,
   * as etcd does). At one writer that empty append, its answer and the
   * follower's extra write were half of each write's messages; followers
   * apply up to a tick later, and linearizable reads are unaffected (the
   * heartbeats of a ReadIndex round carry the commit index).
   */
  deferCommitBroadcast?: boolean
  /** Pre-vote (thesis §9.6): a partitioned node does not bump terms and disrupt the cluster. */
  preVote?: boolean
  /** Check-quorum (thesis §6.2): a leader that has not heard from a quorum in an election timeout steps down. */
  checkQuorum?: boolean
  maxSizePerMsg?: number
  maxInflightMsgs?: number
  maxInflightBytes?: number
  maxCommittedSizePerReady?: number
  snapshotChunkBytes?: number
  maxPendingReads?: number
  maxSnapshotBytes?: number
  /** Ticks without a leader of our configuration before leader messages from a non-voter are accepted (default: DEFAULT_STRANGER_ELECTIONS election timeouts). */
  strangerTicks?: number
  /** Index already applied by the state machine (defaults to the snapshot index). */
  applied?: number
}

export type ResolvedOptions = Required<Omit<RaftCoreOptions, 'applied'>> & { applied: number | undefined }

export function resolveOptions (o: RaftCoreOptions): ResolvedOptions {
  const r: ResolvedOptions = {
    id: o.id,
    storage: o.storage,
    random: o.random,
    electionTicks: o.electionTicks ?? DEFAULT_ELECTION_TICKS,
    electionJitterTicks: o.electionJitterTicks ?? o.electionTicks ?? DEFAULT_ELECTION_TICKS,
    heartbeatTicks: o.heartbeatTicks ?? DEFAULT_HEARTBEAT_TICKS,
    campaignRetryTicks: o.campaignRetryTicks ?? 0,
    learnerHeartbeatTicks: o.learnerHeartbeatTicks ?? o.heartbeatTicks ?? DEFAULT_HEARTBEAT_TICKS,
    deferCommitBroadcast: o.deferCommitBroadcast ?? false,
    preVote: o.preVote ?? true,
    checkQuorum: o.checkQuorum ?? true,
    maxSizePerMsg: o.maxSizePerMsg ?? DEFAULT_MAX_SIZE_PER_MSG,
    maxInflightMsgs: o.maxInflightMsgs ?? DEFAULT_MAX_INFLIGHT_MSGS,
    maxInflightBytes: o.maxInflightBytes ?? DEFAULT_MAX_INFLIGHT_BYTES,
    maxCommittedSizePerReady: o.maxCommittedSizePerReady ?? DEFAULT_MAX_COMMITTED_SIZE_PER_READY,
    snapshotChunkBytes: o.snapshotChunkBytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES,
    maxPendingReads: o.maxPendingReads ?? DEFAULT_MAX_PENDING_READS,
    maxSnapshotBytes: o.maxSnapshotBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES,
    strangerTicks: o.strangerTicks ?? DEFAULT_STRANGER_ELECTIONS * (o.electionTicks ?? DEFAULT_ELECTION_TICKS),
    applied: o.applied,
  }
  if (r.id === '') throw new RaftConfigError('raft: id must be a non-empty string')
  const positive: Array<keyof ResolvedOptions> = ['electionTicks', 'electionJitterTicks', 'heartbeatTicks', 'learnerHeartbeatTicks', 'maxSizePerMsg', 'maxInflightMsgs', 'maxCommittedSizePerReady', 'snapshotChunkBytes', 'maxPendingReads', 'strangerTicks']
  for (const k of positive) {
    const v = r[k]
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new RaftConfigError(`raft: ${k} must be a positive integer, got ${String(v)}`)
  }
  if (!Number.isInteger(r.campaignRetryTicks) || r.campaignRetryTicks < 0) throw new RaftConfigError(`raft: campaignRetryTicks must be a non-negative integer, got ${String(r.campaignRetryTicks)}`)
  if (r.heartbeatTicks >= r.electionTicks) {
    throw new RaftConfigError(`raft: heartbeatTicks (${r.heartbeatTicks}) must be below electionTicks (${r.electionTicks})`)
  }
  return r
}
