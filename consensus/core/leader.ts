// The leader role: replication (probe / pipelined replicate / snapshot per
// follower), commit, heartbeats, check-quorum, ReadIndex and leader transfer.
import type { Message, MessageOf } from '../types.js'
import { entrySize } from '../types.js'
import { CompactedError } from '../errors.js'
import type { RoleContext } from './role-context.js'
import type { Progress } from './progress.js'

export function leaderTick (r: RoleContext): void {
  r.heartbeatElapsed++
  r.learnerHeartbeatElapsed++
  r.electionElapsed++
  if (r.electionElapsed >= r.opts.electionTicks) {
    r.electionElapsed = 0
    if (r.opts.checkQuorum && !r.tracker.quorumActive(r.id)) {
      r.becomeFollower(r.term, null)
      return
    }
    // A transfer that did not finish within an election timeout is abandoned (thesis §3.10).
    r.leadTransferee = null
  }
  for (const [id, p] of r.tracker.progress) {
    if (id === r.id || p.state !== 'snapshot') continue
    // A lost chunk is re-sent after a few idle heartbeats.
    if (++p.snapIdleTicks > 2 * r.opts.heartbeatTicks) sendSnapshotChunk(r, id, p)
  }
  if (r.opts.deferCommitBroadcast) announceCommit(r)
  if (r.heartbeatElapsed >= r.opts.heartbeatTicks) {
    r.heartbeatElapsed = 0
    const learners = r.learnerHeartbeatElapsed >= r.opts.learnerHeartbeatTicks
    if (learners) r.learnerHeartbeatElapsed = 0
    bcastHeartbeat(r, r.readOnly.lastContext(), learners)
  }
}

/**
 * Heartbeats every voter, and every learner too when `learners` is true. A
 * ReadIndex round needs only voters' acks, so it leaves learners out.
 */
export function bcastHeartbeat (r: RoleContext, context: string | undefined, learners: boolean): void {
  for (const [id, p] of r.tracker.progress) {
    if (id === r.id) continue
    if (!learners && !r.tracker.isVoter(id)) continue
    // Never tell a follower to commit beyond what it is known to have.
    const commit = Math.min(p.match, r.log.committed)
    const m: Message = { type: 'heartbeat', from: r.id, to: id, term: r.term, commit }
    if (context !== undefined) m.context = context
    r.send(m)
    if (commit > p.sentCommit) p.sentCommit = commit
  }
}

/**
 * A configuration change just committed: every follower is told at once,
 * in this Ready, an append to those it may send to and a heartbeat to a
 * paused one (it may have the entry: heartbeats carry the commit index up
 * to what it is known to hold). The change may remove this leader, which
 * then goes quiet; followers left unaware of the commit would elect in the
 * old configuration, counting the removed leader (simulator seed 6876: a
 * paused follower never learnt it, and a lagging one campaigned in an even
 * older one).
 */
function announceConfCommit (r: RoleContext): void {
  for (const [id, p] of r.tracker.progress) {
    if (id === r.id || sendAppend(r, id, true)) continue
    const m: Message = { type: 'heartbeat', from: r.id, to: id, term: r.term, commit: Math.min(p.match, r.log.committed) }
    r.send(m)
    if (m.commit > p.sentCommit) p.sentCommit = m.commit
  }
}

/** deferCommitBroadcast: tells each follower not yet told the commit index (an empty append if it has nothing new). */
function announceCommit (r: RoleContext): void {
  const committed = r.log.committed
  for (const [id, p] of r.tracker.progress) {
    if (id !== r.id && p.sentCommit < committed) sendAppend(r, id, true)
  }
}

export function bcastAppend (r: RoleContext): void {
  for (const id of r.tracker.progress.keys()) {
    if (id !== r.id) sendAppend(r, id, true)
  }
}

/** Sends what `to` needs next if it is not paused; false if nothing was sent. */
export function sendAppend (r: RoleContext, to: string, sendIfEmpty: boolean): boolean {
  const p = r.tracker.progress.get(to)
  if (p === undefined || p.isPaused()) return false
  const prevIndex = p.next - 1
  const prevTerm = r.log.term(prevIndex)
  if (prevTerm === undefined) return startSnapshot(r, to, p)
  let ents
  try {
    ents = r.log.entriesFrom(p.next, r.opts.maxSizePerMsg)
  } catch (err) {
    if (err instanceof CompactedError) return startSnapshot(r, to, p)
    throw err
  }
  if (ents === null) return false // being fetched from disk; retried on the next heartbeat response
  if (ents.length === 0 && !sendIfEmpty) return false
  r.send({ type: 'app', from: r.id, to, term: r.term, index: prevIndex, logTerm: prevTerm, commit: r.log.committed, entries: ents })
  p.sentCommit = r.log.committed
  const last = ents[ents.length - 1]
  p.sentEntries(last?.index ?? prevIndex, ents.length, ents.reduce((s, e) => s + entrySize(e), 0))
  return true
}

function startSnapshot (r: RoleContext, to: string, p: Progress): boolean {
  // Snapshots are expensive; only send them to peers that answer (etcd does the same).
  if (!p.recentActive) return false
  const snap = r.log.snapshot()
  if (snap.meta.index === 0) return false
  p.becomeSnapshot(snap.meta.index)
  sendSnapshotChunk(r, to, p)
  return true
}

function sendSnapshotChunk (r: RoleContext, to: string, p: Progress): void {
  const snap = r.log.snapshot()
  if (snap.meta.index !== p.pendingSnapshot) {
    // Compacted again meanwhile: restart with the newer snapshot.
    p.becomeSnapshot(snap.meta.index)
  }
  const off = Math.min(p.snapOffset, snap.data.length)
  const chunk = snap.data.subarray(off, off + r.opts.snapshotChunkBytes)
  r.send({ type: 'snap', from: r.id, to, term: r.term, meta: snap.meta, offset: off, total: snap.data.length, chunk })
  p.snapIdleTicks = 0
}

export function handleTransfer (r: RoleContext, target: string): void {
  const p = r.tracker.progress.get(target)
  if (p === undefined || p.isLearner || target === r.id) return
  if (r.leadTransferee === target) return
  r.leadTransferee = target
  // The transfer must finish within an election timeout or it is abandoned.
  r.electionElapsed = 0
  if (p.match === r.log.lastIndex()) sendTimeoutNow(r, target)
  else sendAppend(r, target, true)
}

function sendTimeoutNow (r: RoleContext, to: string): void {
  r.send({ type: 'timeoutNow', from: r.id, to, term: r.term })
}

export function stepLeader (r: RoleContext, m: Message): void {
  switch (m.type) {
    case 'appResp': handleAppResp(r, m); return
    case 'heartbeatResp': handleHeartbeatResp(r, m); return
    case 'snapResp': {
      const p = r.tracker.progress.get(m.from)
      if (p === undefined) return
      p.recentActive = true
      if (p.state !== 'snapshot' || m.index !== p.pendingSnapshot) return
      const total = r.log.snapshot().data.length
      if (m.offset > total) return
      p.snapOffset = m.offset
      sendSnapshotChunk(r, m.from, p)
      return
    }
    case 'readIndex': handleReadIndex(r, m); return
    case 'transferLeader': handleTransfer(r, m.target); return
    default:
  }
}

function handleAppResp (r: RoleContext, m: MessageOf<'appResp'>): void {
  const p = r.tracker.progress.get(m.from)
  if (p === undefined) return
  p.recentActive = true
  if (m.reject) {
    // The hint lets us skip every entry of a conflicting term at once.
    const probe = m.hintTerm > 0 ? r.log.findConflictByTerm(m.hintIndex, m.hintTerm)[0] : m.hintIndex
    if (p.maybeDecrTo(m.index, probe)) {
      if (p.state === 'replicate') p.becomeProbe()
      sendAppend(r, m.from, true)
    }
    return
  }
  const wasPaused = p.isPaused()
  if (!(p.maybeUpdate(m.index) || (p.match === m.index && p.state === 'probe'))) return
  if (p.state === 'probe') p.becomeReplicate()
  else if (p.state === 'snapshot' && p.match + 1 >= r.log.firstIndex()) {
    p.becomeProbe()
    p.becomeReplicate()
  } else if (p.state === 'replicate') p.inflights.freeLE(m.index)
  const before = r.log.committed
  if (r.maybeCommit()) {
    if (r.pendingConfIndex > before && r.pendingConfIndex <= r.log.committed) announceConfCommit(r)
    else if (!r.opts.deferCommitBroadcast) bcastAppend(r)
    else {
      // New entries still go out at once and carry the new commit index; the rest waits for announceCommit.
      for (const id of r.tracker.progress.keys()) if (id !== r.id && id !== m.from) sendAppend(r, id, false)
      if (wasPaused) sendAppend(r, m.from, true)
    }
  } else if (wasPaused) {
    sendAppend(r, m.from, true)
  }
  // Fill the pipeline while there is more to send and room in flight.
  while (sendAppend(r, m.from, false)) { /* loop */ }
  if (m.from === r.leadTransferee && p.match === r.log.lastIndex()) sendTimeoutNow(r, m.from)
}

function handleHeartbeatResp (r: RoleContext, m: MessageOf<'heartbeatResp'>): void {
  const p = r.tracker.progress.get(m.from)
  if (p === undefined) return
  p.recentActive = true
  p.probeSent = false
  if (p.state === 'replicate' && p.inflights.full()) p.inflights.freeFirstOne()
  if (p.match < r.log.lastIndex() && p.state !== 'snapshot') sendAppend(r, m.from, true)
  if (m.context === undefined) return
  const acks = r.readOnly.recvAck(m.from, m.context)
  if (acks === undefined || !r.tracker.hasQuorum(acks)) return
  for (const rs of r.readOnly.advance(m.context)) respondRead(r, rs.from, rs.context, rs.index)
}

function respondRead (r: RoleContext, from: string, context: string, index: number): void {
  if (from === r.id) r.readStates.push({ index, context })
  else r.send({ type: 'readIndexResp', from: r.id, to: from, term: r.term, context, index, reject: false })
}

function handleReadIndex (r: RoleContext, m: MessageOf<'readIndex'>): void {
  if (!r.committedInTerm()) {
    // Thesis §6.4 step 1: the commit index is only known once an entry of this term commits.
    if (r.pendingReadIndex.length < r.opts.maxPendingReads) r.pendingReadIndex.push({ context: m.context, from: m.from })
    return
  }
  if (r.tracker.voters.size === 1 && r.tracker.isVoter(r.id)) {
    respondRead(r, m.from, m.context, r.log.committed)
    return
  }
  if (r.readOnly.add(m.context, r.log.committed, m.from, r.id)) bcastHeartbeat(r, m.context, false)
}
