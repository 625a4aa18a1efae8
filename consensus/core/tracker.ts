// Cluster configuration as the core sees it (voters and learners), the
// leader's per-peer Progress, vote tallies and quorum arithmetic.
import type { ConfChange, ConfState } from '../types.js'
import { Progress } from './progress.js'

export type VoteResult = 'won' | 'lost' | 'pending'

export function confStateEqual (a: ConfState, b: ConfState): boolean {
  const eq = (x: string[], y: string[]): boolean => x.length === y.length && [...x].sort().join('\0') === [...y].sort().join('\0')
  return eq(a.voters, b.voters) && eq(a.learners, b.learners)
}

/** Validates a single-server change against `cs`; returns the reason it is invalid, or null. */
export function confChangeProblem (cs: ConfState, cc: ConfChange): string | null {
  const isVoter = cs.voters.includes(cc.node)
  const isLearner = cs.learners.includes(cc.node)
  switch (cc.type) {
    case 'addLearner': return isVoter || isLearner ? `${cc.node} is already a member` : null
    case 'addVoter': return isVoter ? `${cc.node} is already a voter` : null
    case 'promote': return isLearner ? null : `${cc.node} is not a learner`
    case 'remove':
      if (!isVoter && !isLearner) return `${cc.node} is not a member`
      if (isVoter && cs.voters.length === 1) return `cannot remove the last voter ${cc.node}`
      return null
  }
}

export function applyConfChange (cs: ConfState, cc: ConfChange): ConfState {
  const voters = cs.voters.filter(v => v !== cc.node)
  const learners = cs.learners.filter(v => v !== cc.node)
  switch (cc.type) {
    case 'addLearner': learners.push(cc.node); break
    case 'addVoter': case 'promote': voters.push(cc.node); break
    case 'remove': break
  }
  return { voters, learners }
}

export class ProgressTracker {
  voters = new Set<string>()
  learners = new Set<string>()
  progress = new Map<string, Progress>()
  votes = new Map<string, boolean>()

  constructor (readonly maxInflight: number, readonly maxInflightBytes: number) {}

  confState (): ConfState {
    return { voters: [...this.voters].sort(), learners: [...this.learners].sort() }
  }

  /** Installs a configuration, keeping the progress of peers that stay. */
  setConfig (cs: ConfState, nextIndex: number): void {
    this.voters = new Set(cs.voters)
    this.learners = new Set(cs.learners)
    for (const id of [...this.progress.keys()]) {
      if (!this.voters.has(id) && !this.learners.has(id)) this.progress.delete(id)
    }
    for (const id of [...cs.voters, ...cs.learners]) {
      const p = this.progress.get(id)
      if (p === undefined) {
        const np = new Progress(nextIndex, this.learners.has(id), this.maxInflight, this.maxInflightBytes)
        // A new peer counts as active so check-quorum does not depose the leader for adding it.
        np.recentActive = true
        this.progress.set(id, np)
      } else {
        p.isLearner = this.learners.has(id)
      }
    }
  }

  isVoter (id: string): boolean { return this.voters.has(id) }

  quorum (): number { return Math.floor(this.voters.size / 2) + 1 }

  /** Largest index replicated on a quorum of voters. */
  committedIndex (): number {
    const matches = [...this.voters].map(id => this.progress.get(id)?.match ?? 0).sort((a, b) => b - a)
    if (matches.length === 0) return 0
    return matches[this.quorum() - 1] ?? 0
  }

  resetVotes (): void { this.votes.clear() }

  recordVote (id: string, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted)
  }

  tallyVotes (): VoteResult {
    let granted = 0
    let rejected = 0
    for (const id of this.voters) {
      const v = this.votes.get(id)
      if (v === true) granted++
      else if (v === false) rejected++
    }
    const q = this.quorum()
    if (granted >= q) return 'won'
    if (rejected > this.voters.size - q) return 'lost'
    return 'pending'
  }

  /** Check-quorum: true if a quorum of voters (counting `self`) was recently active; resets the flags. */
  quorumActive (self: string): boolean {
    let active = 0
    for (const id of this.voters) {
      const p = this.progress.get(id)
      if (id === self || p?.recentActive === true) active++
    }
    for (const [id, p] of this.progress) p.recentActive = id === self
    return active >= this.quorum()
  }

  /** True if `acks` (voters that acknowledged) form a quorum. */
  hasQuorum (acks: Set<string>): boolean {
    let n = 0
    for (const id of this.voters) if (acks.has(id)) n++
    return n >= this.quorum()
  }
}
