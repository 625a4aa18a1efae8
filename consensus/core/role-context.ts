// What the role step functions (leader.ts, follower.ts, status.ts) may use
// of the core: its state and the transitions they trigger. Raft
// implements it; the step functions take this interface, not the class, so
// the role files do not import raft.ts back.
import type { ConfState, Message, ReadState, Role, SnapshotMeta } from '../types.js'
import type { RaftLog } from './log.js'
import type { ProgressTracker } from './tracker.js'
import type { ReadOnly } from './read-only.js'
import type { ResolvedOptions } from './config.js'

/** A snapshot arriving in chunks from the leader. */
export interface SnapshotReceive { meta: SnapshotMeta, total: number, received: number, chunks: Uint8Array[] }

export interface RoleContext {
  readonly id: string
  readonly opts: ResolvedOptions
  readonly log: RaftLog
  readonly tracker: ProgressTracker
  readonly readOnly: ReadOnly
  term: number
  vote: string
  lead: string | null
  role: Role
  electionElapsed: number
  heartbeatElapsed: number
  learnerHeartbeatElapsed: number
  refusedMessages: number
  leadTransferee: string | null
  /** Leader: the index of the last configuration change proposed (see Raft). */
  readonly pendingConfIndex: number
  pendingReadIndex: Array<{ context: string, from: string }>
  readStates: ReadState[]
  snapRecv: SnapshotReceive | null
  confHistory: Array<{ index: number, conf: ConfState }>
  send: (m: Message) => void
  becomeFollower: (term: number, lead: string | null) => void
  becomeLeader: () => void
  hup: (transfer: boolean) => void
  runElection: (kind: 'pre' | 'real', transfer: boolean) => void
  maybeCommit: () => boolean
  committedInTerm: () => boolean
}
