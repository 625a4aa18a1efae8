// Safety invariants the simulator checks after every step: election safety,
// log matching, leader completeness, state-machine safety and that committed
// entries are never lost or replaced (Raft paper, Figure 3).
import type { Entry } from '../types.js'
import type { RaftCore } from '../core/raft-core.js'

export class SafetyViolation extends Error {
  override name = 'SafetyViolation'
}

const decoder = new TextDecoder()

export function fingerprint (e: Entry): string {
  return e.type === 'normal' ? `n:${decoder.decode(e.data)}` : `c:${e.change.type}:${e.change.node}`
}

export class SafetyChecker {
  /** term -> the one leader it may have. */
  private readonly leaders = new Map<number, string>()
  /** "index:term" -> entry fingerprint and the term before it (log matching by induction). */
  private readonly written = new Map<string, { fp: string, prevTerm: number }>()
  /** index -> committed entry, as first learned from any node. */
  readonly committed = new Map<number, { term: number, fp: string }>()
  /** index -> state-machine fingerprint after applying up to it. */
  private readonly states = new Map<number, string>()

  private fail (what: string): never {
    throw new SafetyViolation(what)
  }

  /** Election safety: at most one leader per term. */
  checkLeader (core: RaftCore): void {
    if (core.role !== 'leader') return
    const prev = this.leaders.get(core.term)
    if (prev === undefined) {
      this.leaders.set(core.term, core.id)
      this.checkLeaderCompleteness(core)
    } else if (prev !== core.id) {
      this.fail(`election safety: term ${core.term} has two leaders, ${prev} and ${core.id}`)
    }
  }

  /** Leader completeness: a new leader holds every entry committed before its term. */
  private checkLeaderCompleteness (core: RaftCore): void {
    const first = core.log.firstIndex()
    for (const [i, c] of this.committed) {
      if (i < first || c.term >= core.term) continue
      const t = core.log.term(i)
      if (t !== c.term) this.fail(`leader completeness: leader ${core.id} of term ${core.term} has term ${String(t)} at committed index ${i} (committed term ${c.term})`)
    }
  }

  /** Log matching: same index and term means same entry and same term before it. */
  checkWrite (node: string, entries: Entry[], prevTerm: number): void {
    let pt = prevTerm
    for (const e of entries) {
      const key = `${e.index}:${e.term}`
      const fp = fingerprint(e)
      const w = this.written.get(key)
      if (w === undefined) this.written.set(key, { fp, prevTerm: pt })
      else if (w.fp !== fp || w.prevTerm !== pt) {
        this.fail(`log matching: ${node} wrote ${fp} (prev term ${pt}) at ${key}, another node has ${w.fp} (prev term ${w.prevTerm})`)
      }
      pt = e.term
    }
  }

  /** Committed entries never change, whoever reports them. */
  checkCommitted (node: string, entries: Entry[]): void {
    for (const e of entries) {
      const fp = fingerprint(e)
      const c = this.committed.get(e.index)
      if (c === undefined) this.committed.set(e.index, { term: e.term, fp })
      else if (c.term !== e.term || c.fp !== fp) {
        this.fail(`state machine safety: ${node} applies ${fp}@${e.term} at index ${e.index}, but ${c.fp}@${c.term} was committed there`)
      }
    }
  }

  /** Every node's state machine passes through the same states. */
  checkState (node: string, index: number, state: string): void {
    const s = this.states.get(index)
    if (s === undefined) this.states.set(index, state)
    else if (s !== state) this.fail(`state machine safety: ${node} has state ${state} after index ${index}, another node had ${s}`)
  }
}
