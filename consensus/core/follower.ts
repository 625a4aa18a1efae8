// The follower and (pre-)candidate roles: accepting appends, heartbeats and
// chunked snapshots from the leader, counting votes, and leader transfer.
import type { Message, MessageOf, Snapshot } from '../types.js'
import type { RoleContext } from './role-context.js'

/** A snapshot being received chunk by chunk. */
export function stepFollower (r: RoleContext, m: Message): void {
  switch (m.type) {
    case 'app':
      r.electionElapsed = 0
      r.lead = m.from
      handleAppend(r, m)
      return
    case 'heartbeat':
      r.electionElapsed = 0
      r.lead = m.from
      handleHeartbeat(r, m)
      return
    case 'snap':
      r.electionElapsed = 0
      r.lead = m.from
      handleSnapChunk(r, m)
      return
    case 'timeoutNow':
      // Leader transfer: campaign at once, skipping pre-vote and the lease check (thesis §3.10).
      r.hup(true)
      return
    case 'readIndexResp':
      if (!m.reject) r.readStates.push({ index: m.index, context: m.context })
      return
    case 'transferLeader':
      if (r.lead !== null) r.send({ ...m, from: r.id, to: r.lead, term: r.term })
      return
    default:
  }
}

export function stepCandidate (r: RoleContext, m: Message): void {
  const respType = r.role === 'preCandidate' ? 'preVoteResp' : 'voteResp'
  switch (m.type) {
    case 'app':
      r.becomeFollower(m.term, m.from)
      handleAppend(r, m)
      return
    case 'heartbeat':
      r.becomeFollower(m.term, m.from)
      handleHeartbeat(r, m)
      return
    case 'snap':
      r.becomeFollower(m.term, m.from)
      handleSnapChunk(r, m)
      return
    case 'voteResp':
    case 'preVoteResp': {
      if (m.type !== respType) return
      r.tracker.recordVote(m.from, !m.reject)
      const res = r.tracker.tallyVotes()
      if (res === 'won') {
        if (r.role === 'preCandidate') r.runElection('real', false)
        else r.becomeLeader()
      } else if (res === 'lost') {
        // A pre-candidate that lost keeps its term; a candidate keeps its new one.
        r.becomeFollower(r.term, null)
      }
      return
    }
    default:
  }
}

function handleAppend (r: RoleContext, m: MessageOf<'app'>): void {
  if (m.index < r.log.committed) {
    r.send({ type: 'appResp', from: r.id, to: m.from, term: r.term, index: r.log.committed, reject: false, hintIndex: 0, hintTerm: 0 })
    return
  }
  const lastNew = r.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries)
  if (lastNew !== undefined) {
    r.send({ type: 'appResp', from: r.id, to: m.from, term: r.term, index: lastNew, reject: false, hintIndex: 0, hintTerm: 0 })
    return
  }
  // Hint the largest index at or below the probe whose term is <= the leader's term there.
  const [hintIndex, hintTerm] = r.log.findConflictByTerm(Math.min(m.index, r.log.lastIndex()), m.logTerm)
  r.send({ type: 'appResp', from: r.id, to: m.from, term: r.term, index: m.index, reject: true, hintIndex, hintTerm })
}

function handleHeartbeat (r: RoleContext, m: MessageOf<'heartbeat'>): void {
  r.log.commitTo(Math.min(m.commit, r.log.lastIndex()))
  const resp: Message = { type: 'heartbeatResp', from: r.id, to: m.from, term: r.term }
  if (m.context !== undefined) resp.context = m.context
  r.send(resp)
}

function handleSnapChunk (r: RoleContext, m: MessageOf<'snap'>): void {
  const reply = (offset: number): void => { r.send({ type: 'snapResp', from: r.id, to: m.from, term: r.term, index: m.meta.index, offset }) }
  if (m.meta.index <= r.log.committed) {
    // Already have everything it covers: tell the leader where we are.
    r.snapRecv = null
    r.send({ type: 'appResp', from: r.id, to: m.from, term: r.term, index: r.log.committed, reject: false, hintIndex: 0, hintTerm: 0 })
    return
  }
  if (m.total > r.opts.maxSnapshotBytes || m.offset + m.chunk.length > m.total) return
  let rc = r.snapRecv
  if (rc === null || rc.meta.index !== m.meta.index || rc.meta.term !== m.meta.term || rc.total !== m.total) {
    if (m.offset !== 0) { reply(0); return }
    rc = { meta: m.meta, total: m.total, received: 0, chunks: [] }
    r.snapRecv = rc
  }
  if (m.offset !== rc.received) { reply(rc.received); return }
  rc.chunks.push(Uint8Array.from(m.chunk))
  rc.received += m.chunk.length
  if (rc.received < rc.total) { reply(rc.received); return }
  r.snapRecv = null
  const data = new Uint8Array(rc.total)
  let off = 0
  for (const c of rc.chunks) { data.set(c, off); off += c.length }
  const snap: Snapshot = { meta: rc.meta, data }
  const restored = restore(r, snap)
  r.send({ type: 'appResp', from: r.id, to: m.from, term: r.term, index: restored ? r.log.lastIndex() : r.log.committed, reject: false, hintIndex: 0, hintTerm: 0 })
}

/** Installs a snapshot from the leader; false if our log already covers it. */
function restore (r: RoleContext, s: Snapshot): boolean {
  if (s.meta.index <= r.log.committed) return false
  if (r.log.matchTerm(s.meta.index, s.meta.term)) {
    // Our log has the entry: the snapshot adds only a commit index (etcd does the same).
    r.log.commitTo(s.meta.index)
    return false
  }
  r.log.restore(s)
  r.tracker.setConfig(s.meta.confState, r.log.lastIndex() + 1)
  r.confHistory = [{ index: s.meta.index, conf: s.meta.confState }]
  return true
}
