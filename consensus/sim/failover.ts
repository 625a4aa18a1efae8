// `node dist/consensus/sim/failover.js [--voters 3] [--rounds 2000] [--load 0..1]`:
// a millisecond-level model of raft-failover with the agent's settings (20 ms
// ticks that fire late under load, 50-tick timeout, 0.3 jitter, 5-tick
// heartbeat and campaign retry, message latency and fsync delays). Kills the
// leader once per round and prints p50/p99 time until a new leader commits an
// entry of its term, as a ratio to the timeout, and why slow rounds were slow.
import { parseArgs } from 'node:util'
import { RaftCore } from '../core/raft-core.js'
import type { RaftCoreOptions } from '../core/config.js'
import { MemoryStorage } from '../storage/memory.js'
import { bootstrapRequest } from '../storage/bootstrap.js'
import type { Message } from '../types.js'
import { Prng } from './prng.js'

const TICK_MS = 20
const ELECTION_MS = 1000

export interface FailoverOptions { voters: number, load: number, core?: Partial<RaftCoreOptions> }
export interface RoundResult { ms: number, elections: number, why: string[] }

interface Ev { at: number, seq: number, run: () => void }

/** One round: elect, run a while, kill -9 the leader, time until a new leader commits in its term. */
export function failoverRound (seed: number, o: FailoverOptions): RoundResult {
  const rnd = new Prng(seed)
  const r = (): number => rnd.next()
  const ids = Array.from({ length: o.voters }, (_, i) => `n${i + 1}`)
  const cores = new Map<string, RaftCore | null>()
  const evs: Ev[] = []
  let seq = 0
  let now = 0
  const at = (t: number, run: () => void): void => {
    const e = { at: t, seq: seq++, run }
    let i = evs.length
    while (i > 0 && (evs[i - 1]!.at > t || (evs[i - 1]!.at === t && evs[i - 1]!.seq > e.seq))) i--
    evs.splice(i, 0, e)
  }
  // Under load a timer or a delivery is late by up to load * 60 ms (skewed towards small).
  const late = (): number => o.load * 60 * r() * r()
  const why: string[] = []
  const log = (s: string): void => { if (now >= killAt) why.push(`${Math.round(now - killAt)}ms ${s}`) }
  let killAt = Infinity
  const busy = new Map<string, number>()
  const stores = new Map<string, MemoryStorage>()
  const process = (id: string): void => {
    const c = cores.get(id)
    if (c === null || c === undefined) return
    const rd = c.ready()
    if (rd === null) return
    const st = stores.get(id)!
    const req: Parameters<MemoryStorage['saveSync']>[0] = { entries: rd.entries }
    if (rd.hardState !== undefined) req.hardState = rd.hardState
    st.saveSync(req)
    // Messages leave after the batch is synced (fsync 1-4 ms, more under load).
    const sync = rd.entries.length > 0 || rd.hardState !== undefined ? 1 + 3 * r() + late() : 0
    const start = Math.max(now, busy.get(id) ?? 0) + sync
    busy.set(id, start)
    for (const m of rd.messages) {
      if (m.type === 'vote' || m.type === 'preVote' || m.type === 'voteResp' || m.type === 'preVoteResp') {
        log(`${m.from}->${m.to} ${m.type} t${m.term}${'reject' in m && m.reject === true ? ' reject' : ''}${'index' in m ? ` last=${m.logTerm}/${m.index}` : ''}`)
      }
      at(start + 0.3 + 2 * r() + late(), () => deliver(m))
    }
    c.advance(rd)
  }
  const deliver = (m: Message): void => {
    const c = cores.get(m.to)
    if (c === null || c === undefined) return
    const before = c.role
    c.step(m)
    if (c.role !== before) log(`${c.id} ${before}->${c.role} t${c.term}`)
    process(m.to)
  }
  const tick = (id: string): void => {
    const c = cores.get(id)
    if (c === null || c === undefined) return
    const before = c.role
    c.tick()
    if (c.role !== before) log(`${id} ${before}->${c.role} t${c.term} (tick)`)
    process(id)
    // Node reschedules a repeating timer after its callback ran: lateness accumulates.
    at(now + TICK_MS + late(), () => tick(id))
  }
  for (const id of ids) {
    const st = new MemoryStorage()
    st.saveSync(bootstrapRequest(ids))
    stores.set(id, st)
    cores.set(id, new RaftCore({
      id,
      storage: st,
      random: r,
      electionTicks: ELECTION_MS / TICK_MS,
      electionJitterTicks: Math.round(0.3 * ELECTION_MS / TICK_MS),
      heartbeatTicks: 5,
      campaignRetryTicks: 5,
      ...o.core
    }))
    at(r() * TICK_MS, () => tick(id))
  }
  const step = (): boolean => {
    const e = evs.shift()
    if (e === undefined) return false
    now = e.at
    e.run()
    return true
  }
  // Elect a leader, let it commit, then kill it at a random moment.
  const leaderOf = (): RaftCore | undefined => [...cores.values()].find(c => c !== null && c.role === 'leader' && c.committedInTerm()) ?? undefined
  while (leaderOf() === undefined && now < 60_000) step()
  const warm = now + 2000 + 3000 * r()
  while (now < warm) step()
  const old = leaderOf()
  if (old === undefined) throw new Error(`seed ${seed}: no leader before the kill`)
  killAt = now
  cores.set(old.id, null)
  const oldTerm = old.term
  for (;;) {
    if (!step()) throw new Error(`seed ${seed}: ran out of events`)
    const l = [...cores.values()].find(c => c !== null && c.role === 'leader' && c.term > oldTerm && c.committedInTerm())
    if (l !== undefined) {
      const terms = Math.max(...[...cores.values()].map(c => c?.term ?? 0)) - oldTerm
      return { ms: now - killAt, elections: terms, why }
    }
    if (now - killAt > 30_000) return { ms: Infinity, elections: -1, why }
  }
}

function pct (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(p / 100 * s.length) - 1)]!
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { voters: { type: 'string', default: '3' }, rounds: { type: 'string', default: '1000' }, load: { type: 'string', default: '0.5' }, show: { type: 'string', default: '2' }, retryCandidates: { type: 'boolean', default: false } } })
  const o: FailoverOptions = { voters: Number(values.voters), load: Number(values.load) }
  const res: RoundResult[] = []
  for (let s = 1; s <= Number(values.rounds); s++) res.push({ ...failoverRound(s, o), seed: s } as RoundResult)
  const ms = res.map(x => x.ms)
  const multi = res.filter(x => x.elections > 1)
  console.log(`voters ${o.voters} load ${o.load}: p50 ${(pct(ms, 50) / ELECTION_MS).toFixed(2)} p99 ${(pct(ms, 99) / ELECTION_MS).toFixed(2)} max ${(Math.max(...ms) / ELECTION_MS).toFixed(2)} x timeout; rounds with >1 term: ${multi.length}/${res.length}`)
  for (const x of res.filter(y => y.ms > 1.5 * ELECTION_MS).slice(0, Number(values.show))) console.log(`--- seed ${(x as RoundResult & { seed: number }).seed} ${Math.round(x.ms)} ms, ${x.elections} terms\n${x.why.join('\n')}`)
}
