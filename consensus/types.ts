// Shared Raft data types: log entries, configuration, hard state, snapshots and
// the messages peers exchange. Wire-facing shapes are zod schemas so the codec
// and the storage decode them with the same checks the core relies on.
import { z } from 'zod'

/** Node ids are opaque strings (the agent uses libp2p peer ids). */
export const NodeIdSchema = z.string().min(1).max(128)
const Index = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
const Bytes = z.custom<Uint8Array>(v => v instanceof Uint8Array, { message: 'expected bytes' })

/** One server at a time (thesis §4.1); learners receive the log but never vote. */
export const ConfChangeSchema = z.object({
  type: z.enum(['addLearner', 'addVoter', 'promote', 'remove']),
  node: NodeIdSchema,
})
export type ConfChange = z.infer<typeof ConfChangeSchema>

export const ConfStateSchema = z.object({
  voters: z.array(NodeIdSchema).max(64),
  learners: z.array(NodeIdSchema).max(64),
})
export type ConfState = z.infer<typeof ConfStateSchema>

export const NormalEntrySchema = z.object({ type: z.literal('normal'), term: Index, index: Index, data: Bytes })
export const ConfEntrySchema = z.object({ type: z.literal('conf'), term: Index, index: Index, change: ConfChangeSchema })
export const EntrySchema = z.discriminatedUnion('type', [NormalEntrySchema, ConfEntrySchema])
export type NormalEntry = z.infer<typeof NormalEntrySchema>
export type ConfEntry = z.infer<typeof ConfEntrySchema>
export type Entry = z.infer<typeof EntrySchema>

export const HardStateSchema = z.object({ term: Index, vote: z.string().max(128), commit: Index })
export type HardState = z.infer<typeof HardStateSchema>

export const SnapshotMetaSchema = z.object({ index: Index, term: Index, confState: ConfStateSchema })
export type SnapshotMeta = z.infer<typeof SnapshotMetaSchema>
export interface Snapshot { meta: SnapshotMeta, data: Uint8Array }

const base = { from: NodeIdSchema, to: NodeIdSchema, term: Index }
/** Append entries after (index, logTerm); commit is the leader's commit index. */
export const AppMsgSchema = z.object({ type: z.literal('app'), ...base, index: Index, logTerm: Index, commit: Index, entries: z.array(EntrySchema).max(100_000) })
/**
 * Answer to `app`. On success `index` is the follower's last matching index.
 * On reject, `index` is the rejected prevIndex and (hintIndex, hintTerm) is the
 * follower's best guess of a match: its entry at min(prevIndex, lastIndex), so
 * the leader can skip a whole term per round trip (thesis §5.3 optimisation).
 */
export const AppRespMsgSchema = z.object({ type: z.literal('appResp'), ...base, index: Index, reject: z.boolean(), hintIndex: Index, hintTerm: Index })
/** Vote and pre-vote requests carry the candidate's last log position. */
export const VoteMsgSchema = z.object({ type: z.enum(['vote', 'preVote']), ...base, index: Index, logTerm: Index, transfer: z.boolean() })
export const VoteRespMsgSchema = z.object({ type: z.enum(['voteResp', 'preVoteResp']), ...base, reject: z.boolean() })
export const HeartbeatMsgSchema = z.object({ type: z.literal('heartbeat'), ...base, commit: Index, context: z.string().max(256).optional() })
export const HeartbeatRespMsgSchema = z.object({ type: z.literal('heartbeatResp'), ...base, context: z.string().max(256).optional() })
/** One chunk of an InstallSnapshot: bytes [offset, offset+chunk.length) of a snapshot of `total` bytes. */
export const SnapMsgSchema = z.object({ type: z.literal('snap'), ...base, meta: SnapshotMetaSchema, offset: Index, total: Index, chunk: Bytes })
/** `offset` is the next byte the follower expects for the snapshot at `index`. */
export const SnapRespMsgSchema = z.object({ type: z.literal('snapResp'), ...base, index: Index, offset: Index })
export const TimeoutNowMsgSchema = z.object({ type: z.literal('timeoutNow'), ...base })
export const ReadIndexMsgSchema = z.object({ type: z.literal('readIndex'), ...base, context: z.string().max(256) })
export const ReadIndexRespMsgSchema = z.object({ type: z.literal('readIndexResp'), ...base, context: z.string().max(256), index: Index, reject: z.boolean() })
export const TransferLeaderMsgSchema = z.object({ type: z.literal('transferLeader'), ...base, target: NodeIdSchema })

export const MessageSchema = z.discriminatedUnion('type', [
  AppMsgSchema, AppRespMsgSchema, VoteMsgSchema, VoteRespMsgSchema, HeartbeatMsgSchema,
  HeartbeatRespMsgSchema, SnapMsgSchema, SnapRespMsgSchema, TimeoutNowMsgSchema,
  ReadIndexMsgSchema, ReadIndexRespMsgSchema, TransferLeaderMsgSchema,
])
export type Message = z.infer<typeof MessageSchema>
export type MessageType = Message['type']
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader'

export interface SoftState { leader: string | null, role: Role }
/** A confirmed ReadIndex: reads issued with `context` are linearizable once `index` is applied. */
export interface ReadState { index: number, context: string }

/**
 * What the core wants done, in order (etcd-io/raft `Ready`):
 * 1. write `hardState`, `entries` and `snapshot` to stable storage in ONE atomic batch;
 * 2. only then send `messages`;
 * 3. install `snapshot` into the state machine (if any), then apply `committedEntries`;
 * 4. call `advance(ready)`.
 */
export interface Ready {
  softState?: SoftState
  hardState?: HardState
  entries: Entry[]
  snapshot?: Snapshot
  committedEntries: Entry[]
  messages: Message[]
  readStates: ReadState[]
}

export const emptyHardState = (): HardState => ({ term: 0, vote: '', commit: 0 })
export const emptyConfState = (): ConfState => ({ voters: [], learners: [] })

/** Rough in-memory/wire size of an entry, used for batching limits. */
export function entrySize (e: Entry): number {
  return e.type === 'normal' ? e.data.length + 24 : e.change.node.length + 32
}
