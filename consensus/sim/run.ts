// One randomized simulation per seed: 3-7 cores, a network that drops,
// duplicates, reorders and delays, symmetric and one-way partitions, crashes
// (before or after persisting), tick skew, proposals, ReadIndex reads,
// leadership transfers, compaction and membership changes. Safety is checked
// after every step; at the end the faults stop and the cluster must converge
// with every acknowledged write present.
import type { ConfChange, Entry } from '../types.js'
import { Prng } from './prng.js'
import { SimCluster, type SimNode } from './cluster.js'
import { SafetyViolation } from './checker.js'

export interface SimOptions {
  /** Rounds of faults and load before the final heal. */
  rounds?: number
  /** Rounds allowed to converge once faults stop. */
  settleRounds?: number
}

export interface SeedResult {
  seed: number
  nodes: number
  proposed: number
  acked: number
  reads: number
  elections: number
  snapshotsSent: number
  confChanges: number
  rounds: number
}

export class LivenessViolation extends Error {
  override name = 'LivenessViolation'
}

const enc = new TextEncoder()

function failoverOptions (r: Prng): { electionJitterTicks?: number, campaignRetryTicks?: number } {
  const out: { electionJitterTicks?: number, campaignRetryTicks?: number } = {}
  if (r.chance(0.5)) out.electionJitterTicks = r.int(2, 10)
  if (r.chance(0.5)) out.campaignRetryTicks = r.int(1, 3)
  return out
}

export function runSeed (seed: number, options: SimOptions = {}): SeedResult {
  const rnd = new Prng(seed)
  const netRnd = rnd.fork()
  const coreRnd = rnd.fork()
  const rounds = options.rounds ?? 500
  const settleRounds = options.settleRounds ?? 600
  const voters = rnd.int(3, 5)
  const spare = rnd.int(0, 7 - voters)
  const ids = Array.from({ length: voters }, (_, i) => `n${i + 1}`)
  const cluster = new SimCluster(() => coreRnd.next(), {
    electionTicks: 10,
    heartbeatTicks: rnd.int(1, 3),
    // From its own generator, so the draws below (and so every seed's faults) stay as they were.
    learnerHeartbeatTicks: new Prng(seed ^ 0x1ea4).int(1, 10),
    // The agent's failover options (a narrower election spread, fast campaign retries), on half the seeds each.
    ...failoverOptions(new Prng(seed ^ 0xfa11)),
    // The agent's deferred commit announcements, on half the seeds.
    deferCommitBroadcast: new Prng(seed ^ 0xc0de).chance(0.5),
    preVote: rnd.chance(0.85),
    checkQuorum: rnd.chance(0.85),
    maxSizePerMsg: rnd.int(40, 400),
    maxInflightMsgs: rnd.int(1, 8),
    snapshotChunkBytes: rnd.int(16, 256),
  })
  for (const id of ids) cluster.addNode(id, ids)

  // Fault profile for this seed.
  const drop = rnd.pick([0, 0.01, 0.05, 0.15, 0.3]) ?? 0
  // How turbulent this seed is: scales partitions and crashes.
  const storm = rnd.pick([0.5, 1, 2, 4]) ?? 1
  const dup = rnd.pick([0, 0.02, 0.1]) ?? 0
  const maxDelay = rnd.int(1, 6)
  const tickRate = new Map<string, number>()
  const rateOf = (id: string): number => {
    let r = tickRate.get(id)
    if (r === undefined) { r = 0.7 + netRnd.next() * 0.3; tickRate.set(id, r) }
    return r
  }
  const blocked = new Set<string>() // "from>to"
  let faults = true
  let nextId = voters + 1
  let spareLeft = spare

  const res: SeedResult = { seed, nodes: voters, proposed: 0, acked: 0, reads: 0, elections: 0, snapshotsSent: 0, confChanges: 0, rounds: 0 }
  const proposals = new Map<string, { node: string, index: number, term: number }>()
  const acked: string[] = []
  let ackedMax = 0
  const reads = new Map<string, number>()
  let seq = 0

  cluster.hooks = {
    onApply: (n: SimNode, e: Entry) => {
      if (e.type !== 'normal' || e.data.length === 0) return
      const p = proposals.get(new TextDecoder().decode(e.data))
      if (p !== undefined && p.node === n.id && p.index === e.index && p.term === e.term) {
        acked.push(new TextDecoder().decode(e.data))
        ackedMax = Math.max(ackedMax, e.index)
        proposals.delete(new TextDecoder().decode(e.data))
      }
    },
    onConfApplied: (_n: SimNode, e: Entry) => {
      if (e.type !== 'conf' || e.change.type !== 'remove') return
      // A removed server is shut down once its removal is committed (the agent does the same).
      const gone = cluster.nodes.get(e.change.node)
      if (gone !== undefined && !gone.removed) {
        gone.removed = true
        gone.core = null
      }
    },
    onReadState: (n: SimNode, index: number, context: string) => {
      const floor = reads.get(context)
      if (floor === undefined) return
      reads.delete(context)
      if (index < floor) throw new SafetyViolation(`linearizable read: ${n.id} got read index ${index} for ${context}, but a write at ${floor} was acknowledged before the read began`)
      res.reads++
    },
  }

  const send = (m: import('../types.js').Message): void => {
    if (m.type === 'snap') res.snapshotsSent++
    if (faults && netRnd.chance(drop)) return
    const copies = faults && netRnd.chance(dup) ? 2 : 1
    for (let i = 0; i < copies; i++) cluster.inFlight.push({ msg: m, at: cluster.now + 1 + (faults ? netRnd.int(0, maxDelay) : 0) })
  }

  const members = (): SimNode[] => [...cluster.nodes.values()].filter(n => !n.removed)

  const faultStep = (): void => {
    const all = members().map(n => n.id)
    if (rnd.chance(0.01 * storm)) {
      // Symmetric partition into two sides.
      blocked.clear()
      const side = new Set(all.filter(() => rnd.chance(0.5)))
      for (const a of all) for (const b of all) if (side.has(a) !== side.has(b)) blocked.add(`${a}>${b}`)
    }
    if (rnd.chance(0.008 * storm)) {
      const a = rnd.pick(all)
      const b = rnd.pick(all)
      if (a !== undefined && b !== undefined && a !== b) blocked.add(`${a}>${b}`) // one-way
    }
    if (rnd.chance(0.02)) blocked.clear()
    if (rnd.chance(0.006 * storm)) {
      const v = rnd.pick(cluster.live())
      if (v !== undefined) cluster.crash(v.id)
    }
    if (rnd.chance(0.004 * storm)) {
      // Figure 8 of the Raft paper: a leader reaches only one follower, then dies.
      const l = cluster.leader()
      const peer = rnd.pick(all.filter(id => id !== l?.id))
      if (l !== undefined && peer !== undefined) {
        cluster.processReady(l.id, false, send)
        cluster.inFlight = cluster.inFlight.filter(f => f.msg.from !== l.id || f.msg.to === peer)
        cluster.crash(l.id)
      }
    }
    if (rnd.chance(0.03)) {
      const down = members().filter(n => n.core === null)
      const v = rnd.pick(down)
      if (v !== undefined) cluster.restart(v.id)
    }
  }

  const loadStep = (): void => {
    const live = cluster.live()
    for (let k = rnd.int(0, 2); k > 0; k--) {
      const n = rnd.pick(live)
      if (n?.core?.role !== 'leader') continue
      const payload = `p${++seq}`
      try {
        const r = n.core.propose(enc.encode(payload))
        proposals.set(payload, { node: n.id, index: r.index, term: r.term })
        res.proposed++
      } catch { /* transfer in progress */ }
    }
    if (rnd.chance(0.05)) {
      const n = rnd.pick(live)
      if (n?.core !== null && n?.core !== undefined) {
        const ctx = `r${++seq}`
        try {
          n.core.readIndex(ctx)
          reads.set(ctx, ackedMax)
        } catch { /* no leader */ }
      }
    }
    const leader = cluster.leader()
    if (leader?.core === null || leader?.core === undefined) return
    if (rnd.chance(0.01)) {
      const to = rnd.pick(leader.core.confState().voters)
      if (to !== undefined) leader.core.transferLeader(to)
    }
    if (rnd.chance(0.02)) {
      const cs = leader.core.confState()
      let cc: ConfChange | undefined
      const r = rnd.next()
      if (r < 0.4 && spareLeft > 0) {
        cc = { type: 'addLearner', node: `n${nextId}` }
      } else if (r < 0.7 && cs.learners.length > 0) {
        cc = { type: 'promote', node: rnd.pick(cs.learners) ?? '' }
      } else if (r >= 0.7 && cs.voters.length + cs.learners.length > 3) {
        const victim = rnd.pick([...cs.voters, ...cs.learners])
        if (victim !== undefined && !(cs.voters.includes(victim) && cs.voters.length <= 2)) cc = { type: 'remove', node: victim }
      }
      if (cc !== undefined) {
        try {
          leader.core.proposeConfChange(cc)
          res.confChanges++
          if (cc.type === 'addLearner') {
            cluster.addNode(cc.node)
            nextId++
            spareLeft--
            res.nodes++
          }
        } catch { /* pending change */ }
      }
    }
    if (rnd.chance(0.03)) {
      const n = rnd.pick(live)
      if (n !== undefined) cluster.compact(n.id, rnd.pick([0, 0, 2, 10]) ?? 0)
    }
  }

  let lastLeaderTerm = 0
  const round = (): void => {
    cluster.now++
    for (const n of rnd.shuffle(cluster.live())) {
      if (!faults || rnd.chance(rateOf(n.id))) cluster.tick(n.id)
    }
    const due = cluster.inFlight.filter(f => f.at <= cluster.now)
    cluster.inFlight = cluster.inFlight.filter(f => f.at > cluster.now)
    for (const f of netRnd.shuffle(due)) {
      if (blocked.has(`${f.msg.from}>${f.msg.to}`)) continue
      cluster.deliver(f.msg)
    }
    for (const n of rnd.shuffle(cluster.live())) {
      for (let k = 0; k < 4; k++) {
        const crash = faults && rnd.chance(0.002)
        if (cluster.processReady(n.id, crash, send) === null || crash) break
      }
    }
    const l = cluster.leader()
    if (l?.core !== null && l?.core !== undefined && l.core.term !== lastLeaderTerm) {
      lastLeaderTerm = l.core.term
      res.elections++
    }
  }

  try {
    for (let i = 0; i < rounds; i++) {
      faultStep()
      loadStep()
      round()
    }
    // Faults stop: heal, restart members, and require convergence plus a fresh commit.
    faults = false
    blocked.clear()
    for (const n of members()) cluster.restart(n.id)
    let finalPayload: string | null = null
    let finalTerm = 0
    let converged = false
    for (let i = 0; i < settleRounds && !converged; i++) {
      round()
      const leader = cluster.leader()
      if (leader?.core === null || leader?.core === undefined) continue
      // (Re)propose a final write whenever a new leader has committed in its term: a proposal of a deposed leader may be lost.
      const finalDone = finalPayload !== null && acked.includes(finalPayload)
      if (!finalDone && (finalPayload === null || finalTerm !== leader.core.term) && leader.core.committedInTerm()) {
        finalPayload = `final${seed}.${leader.core.term}`
        try {
          const r = leader.core.propose(enc.encode(finalPayload))
          finalTerm = r.term
          proposals.set(finalPayload, { node: leader.id, index: r.index, term: r.term })
        } catch { finalPayload = null }
      }
      if (finalPayload === null || !acked.includes(finalPayload)) continue
      const cs = leader.core.confState()
      const target = leader.core.log.committed
      converged = [...cs.voters, ...cs.learners].every(id => cluster.nodes.get(id)?.sm.index === target)
    }
    res.rounds = cluster.now
    if (!converged) throw new LivenessViolation(`liveness: cluster did not converge within ${settleRounds} rounds after faults stopped (leader ${cluster.leader()?.id ?? 'none'})`)
    const leader = cluster.leader()
    const applied = new Set(leader?.sm.payloads ?? [])
    for (const p of acked) {
      if (!applied.has(p)) throw new SafetyViolation(`durability: acknowledged write ${p} is missing from the final state`)
    }
    res.acked = acked.length
  } catch (err) {
    if (err instanceof Error) err.message = `seed ${seed}: ${err.message} (replay: npm run sim -- --from ${seed} --seeds 1)`
    throw err
  }
  return res
}
