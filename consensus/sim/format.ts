// Text rendering of messages, entries, Readies and node state for the
// script-style interaction tests (one line per item, stable across runs).
import type { Entry, Message, Ready } from '../types.js'
import type { RaftCore } from '../core/raft-core.js'

const dec = new TextDecoder()

export function fmtEntry (e: Entry): string {
  if (e.type === 'conf') return `${e.term}/${e.index} ${e.change.type} ${e.change.node}`
  return e.data.length === 0 ? `${e.term}/${e.index} empty` : `${e.term}/${e.index} "${dec.decode(e.data)}"`
}

export function fmtEntries (es: Entry[]): string {
  return es.map(fmtEntry).join(', ')
}

export function fmtMessage (m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`
  switch (m.type) {
    case 'app': return `${head} index=${m.index} logTerm=${m.logTerm} commit=${m.commit} entries=[${fmtEntries(m.entries)}]`
    case 'appResp': return m.reject ? `${head} reject index=${m.index} hint=${m.hintIndex}/${m.hintTerm}` : `${head} index=${m.index}`
    case 'vote': case 'preVote': return `${head} last=${m.logTerm}/${m.index}${m.transfer ? ' transfer' : ''}`
    case 'voteResp': case 'preVoteResp': return `${head}${m.reject ? ' reject' : ''}`
    case 'heartbeat': return `${head} commit=${m.commit}${m.context !== undefined ? ` ctx=${m.context}` : ''}`
    case 'heartbeatResp': return `${head}${m.context !== undefined ? ` ctx=${m.context}` : ''}`
    case 'snap': return `${head} snap=${m.meta.term}/${m.meta.index} voters=(${m.meta.confState.voters.join(',')}) learners=(${m.meta.confState.learners.join(',')}) bytes=${m.offset}+${m.chunk.length}/${m.total}`
    case 'snapResp': return `${head} snap=${m.index} next=${m.offset}`
    case 'timeoutNow': return head
    case 'readIndex': return `${head} ctx=${m.context}`
    case 'readIndexResp': return `${head} ctx=${m.context} index=${m.index}${m.reject ? ' reject' : ''}`
    case 'transferLeader': return `${head} target=${m.target}`
  }
}

export function fmtReady (rd: Ready): string[] {
  const out: string[] = []
  if (rd.softState !== undefined) out.push(`role=${rd.softState.role} leader=${rd.softState.leader ?? '-'}`)
  if (rd.hardState !== undefined) out.push(`HardState term=${rd.hardState.term} vote=${rd.hardState.vote === '' ? '-' : rd.hardState.vote} commit=${rd.hardState.commit}`)
  if (rd.snapshot !== undefined) out.push(`Snapshot ${rd.snapshot.meta.term}/${rd.snapshot.meta.index} voters=(${rd.snapshot.meta.confState.voters.join(',')}) learners=(${rd.snapshot.meta.confState.learners.join(',')})`)
  if (rd.entries.length > 0) out.push(`Entries: ${fmtEntries(rd.entries)}`)
  if (rd.committedEntries.length > 0) out.push(`Committed: ${fmtEntries(rd.committedEntries)}`)
  if (rd.readStates.length > 0) out.push(`ReadStates: ${rd.readStates.map(r => `${r.context}@${r.index}`).join(', ')}`)
  if (rd.messages.length > 0) {
    out.push('Messages:')
    for (const m of rd.messages) out.push(fmtMessage(m))
  }
  return out
}

export function fmtState (c: RaftCore): string {
  const cs = c.confState()
  const kind = cs.voters.includes(c.id) ? 'voter' : cs.learners.includes(c.id) ? 'learner' : 'none'
  return `${c.id}: ${c.role} (${kind}) term=${c.term} leader=${c.lead ?? '-'} commit=${c.log.committed} applied=${c.log.applied} last=${c.log.lastIndex()} voters=(${cs.voters.join(',')}) learners=(${cs.learners.join(',')})`
}
