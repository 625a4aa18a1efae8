// A read-only summary of a core for status output and tests.
import type { ConfState, Role } from '../types.js'
import type { RaftCore } from './raft.js'

export interface PeerStatus { match: number, next: number, state: string, recentActive: boolean, isLearner: boolean }
export interface CoreStatus {
  id: string, term: number, vote: string, leader: string | null, role: Role
  commit: number, applied: number, lastIndex: number, firstIndex: number
  config: ConfState, progress: Record<string, PeerStatus>, leadTransferee: string | null
  /** Messages dropped because their sender is not a voter (or learner) of the configuration. */
  refusedMessages: number
}

export function coreStatus (r: RaftCore): CoreStatus {
  const progress: Record<string, PeerStatus> = {}
  if (r.role === 'leader') {
    for (const [id, p] of r.tracker.progress) {
      progress[id] = { match: p.match, next: p.next, state: p.state, recentActive: p.recentActive, isLearner: p.isLearner }
    }
  }
  return {
    id: r.id, term: r.term, vote: r.vote, leader: r.lead, role: r.role,
    commit: r.log.committed, applied: r.log.applied, lastIndex: r.log.lastIndex(), firstIndex: r.log.firstIndex(),
    config: r.tracker.confState(), progress, leadTransferee: r.leadTransferee, refusedMessages: r.refusedMessages,
  }
}
