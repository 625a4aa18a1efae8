// One error class per condition, each with a stable `name` callers match on.

/** The index asked for was compacted into a snapshot. */
export class CompactedError extends Error {
  override name = 'CompactedError'
  constructor (readonly index: number, readonly firstIndex: number) {
    super(`raft log: index ${index} is compacted (first available is ${firstIndex})`)
  }
}

/** The proposal was made to a node that is not the leader; `leader` is its best hint or null. */
export class NotLeaderError extends Error {
  override name = 'NotLeaderError'
  constructor (readonly leader: string | null, message?: string) {
    super(message ?? (leader === null ? 'not the raft leader and no leader is known (retry shortly)' : `not the raft leader: send to ${leader}`))
  }
}

/** A proposal was refused for a reason other than leadership (transfer in progress, invalid change, too large). */
export class ProposalDroppedError extends Error {
  override name = 'ProposalDroppedError'
}

/** A configuration change was refused: another change is still pending or the change is invalid. */
export class ConfChangeError extends Error {
  override name = 'ConfChangeError'
}

/** The node was stopped (or the request aborted) before the operation completed. */
export class RaftStoppedError extends Error {
  override name = 'RaftStoppedError'
}

/** A read or leadership transfer got no answer in time (lost messages, no quorum); retry. */
export class RaftTimeoutError extends Error {
  override name = 'RaftTimeoutError'
}

/** A wire message failed to decode (bad CBOR, schema mismatch, or frame too large). */
export class RaftDecodeError extends Error {
  override name = 'RaftDecodeError'
}

/** A message to send encodes to more than the maximum frame size. */
export class RaftFrameTooLargeError extends Error {
  override name = 'RaftFrameTooLargeError'
}

/** Stored state failed to decode or is inconsistent (corruption, foreign data). */
export class RaftStorageError extends Error {
  override name = 'RaftStorageError'
}

/** A core invariant was violated; this is a bug. */
export class RaftInvariantError extends Error {
  override name = 'RaftInvariantError'
}

/** Configuration options were invalid. */
export class RaftConfigError extends Error {
  override name = 'RaftConfigError'
}

export function invariant (cond: boolean, what: string): asserts cond {
  if (!cond) throw new RaftInvariantError(`raft invariant violated: ${what}`)
}
