// Autopilot's decision, one step at a time, apart from the Raft calls that
// carry it out: remove a server that left or stayed dead past its grace,
// else add an alive member as a learner, else promote a learner while
// voters are short.
//
// Members are taken in the order this node first heard of them (the
// membership table keeps that order), which on the node that admitted them
// is the order they joined. Learners are added and promoted in that order,
// so `join` run three times on a fresh cluster makes the first two joiners
// voters and the third a client, whichever of them catches up first
// (picking the learner with the highest match index made this a race: with
// equal matches the lowest peer id won). A learner that is first in
// line but has not caught up within `catchUpGraceMs` loses its place to the
// next one that has, so one slow node cannot hold promotions up.

/**
 * A learner that has acknowledged an append and is within this many entries
 * of the leader's last index counts as caught up.
 */
export const CAUGHT_UP_ENTRIES = 16
export const ROLE_PREF_LABEL = 'bolt.role'

export interface AutopilotMember {
  id: string
  state: 'alive' | 'suspect' | 'dead' | 'left'
  labels: Record<string, string>
}

export interface AutopilotView {
  self: string
  /** In the order this node first heard of them. */
  members: AutopilotMember[]
  voters: string[]
  learners: string[]
  /** Match index per server. */
  match: Record<string, number>
  lastIndex: number
  wantVoters: number
  deadVoterGraceMs: number
  now: number
}

export type AutopilotStep =
  | { kind: 'remove', id: string, state: AutopilotMember['state'] | undefined }
  | { kind: 'addLearner', id: string }
  | { kind: 'promote', id: string }

/** Raft never runs more voters than this, whatever `raft.voters` says. */
export const MAX_VOTERS = 7

export class Autopilot {
  private readonly deadSince = new Map<string, number>()
  /** When each learner was first seen waiting for promotion. */
  private readonly waitingSince = new Map<string, number>()

  constructor (private readonly catchUpGraceMs = 10_000) {}

  /**
   * Every node calls this each round (so a new leader knows how long members
   * have been dead); only the leader acts on the step it returns.
   */
  step (v: AutopilotView): AutopilotStep | undefined {
    for (const m of v.members) {
      if (m.state === 'dead') { if (!this.deadSince.has(m.id)) this.deadSince.set(m.id, v.now) } else this.deadSince.delete(m.id)
    }
    const inConfig = new Set([...v.voters, ...v.learners])
    const byId = new Map(v.members.map(m => [m.id, m]))
    for (const id of this.waitingSince.keys()) if (!v.learners.includes(id)) this.waitingSince.delete(id)
    // 1. remove members that left, or stayed dead past the grace period
    //    (a dead voter only where that helps: see deadVoterRemovalHelps)
    const deadPastGrace = (id: string): boolean => byId.get(id)?.state === 'dead' && v.now - (this.deadSince.get(id) ?? v.now) >= v.deadVoterGraceMs
    const removeDeadVoters = deadVoterRemovalHelps(v, v.voters.filter(deadPastGrace).length, v.learners.some(id => promotable(byId.get(id))))
    for (const id of inConfig) {
      if (id === v.self) continue
      const m = byId.get(id)
      const gone = m?.state === 'left' || (deadPastGrace(id) && (removeDeadVoters || !v.voters.includes(id)))
      if (gone) return { kind: 'remove', id, state: m?.state }
    }
    // 2. add alive members as learners, in the order they were heard of
    for (const m of v.members) {
      if (m.state === 'alive' && !inConfig.has(m.id)) return { kind: 'addLearner', id: m.id }
    }
    // 3. promote a learner while voters are short: those asking for `server`
    //    first, then in join order; one first in line that has not caught
    //    up within the grace period is passed over.
    if (v.voters.length >= Math.min(v.wantVoters, MAX_VOTERS)) return undefined
    const order = new Map(v.members.map((m, i) => [m.id, i]))
    const eligible = v.learners
      .map(id => ({ id, m: byId.get(id) }))
      .filter(c => promotable(c.m))
      .sort((a, b) => Number(b.m?.labels[ROLE_PREF_LABEL] === 'server') - Number(a.m?.labels[ROLE_PREF_LABEL] === 'server') ||
        (order.get(a.id) ?? order.size) - (order.get(b.id) ?? order.size))
    for (const c of eligible) {
      if (!this.waitingSince.has(c.id)) this.waitingSince.set(c.id, v.now)
      const match = v.match[c.id] ?? 0
      if (match > 0 && match + CAUGHT_UP_ENTRIES >= v.lastIndex) return { kind: 'promote', id: c.id }
      if (v.now - this.waitingSince.get(c.id)! < this.catchUpGraceMs) return undefined
    }
    return undefined
  }
}

/** An alive member that does not ask to stay a client: one autopilot may make a voter. */
function promotable (m: AutopilotMember | undefined): boolean {
  return m?.state === 'alive' && (m.labels[ROLE_PREF_LABEL] ?? 'auto') !== 'client'
}

/**
 * Whether removing the voters dead past their grace is worth it. Removal
 * never lowers how many more failures the cluster survives, but it only
 * raises it where the quorum of the live voters is smaller than today's (4
 * voters with one dead, 5 with two): 3 voters with one dead need 2 acks
 * either way. And it has a cost: a voter that was only slow to restart, or
 * cut off by a partition, comes back as a learner and must catch up and be
 * promoted again, and a leader lost in that window leaves 2 voters of 2
 * needed (raft-failover under load: rounds that never committed, the
 * returning member a learner still naming the dead leader). So a dead voter
 * goes when it helps the quorum, when voters exceed the wanted count, or
 * when an alive learner can take its place.
 */
export function deadVoterRemovalHelps (v: Pick<AutopilotView, 'voters' | 'wantVoters'>, dead: number, replacement: boolean): boolean {
  if (dead === 0) return false
  if (replacement || v.voters.length > Math.min(v.wantVoters, MAX_VOTERS)) return true
  const quorum = (n: number): number => Math.floor(n / 2) + 1
  return quorum(v.voters.length - dead) < quorum(v.voters.length)
}
