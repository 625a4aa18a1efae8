// raft-failover: 3 and 5 real voters; kill -9 the leader 20 times; figure:
// p50 and p99 time until a new leader has committed an entry, as a ratio to
// the configured election timeout (goal p99 <= 1.5).
import { Cluster } from '../test/helpers/harness.js'
import { percentile, type Scenario } from './report.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from './_raft.js'

const ELECTION_TIMEOUT_MS = 1000

/** Rounds slower than 1.5 T: what each write attempt got, and how many terms the failover took. */
export const slowRounds: Array<{ voters: number, ms: number, terms: number, attempts: string[] }> = []

async function failovers (voters: number, rounds: number): Promise<number[]> {
  const cluster = await Cluster.create(RAFT_TOML(voters))
  const times: number[] = []
  try {
    const agents = await formVoters(cluster, voters)
    for (let i = 0; i < rounds; i++) {
      const live = agents.filter(a => a.proc?.exitCode === null && a.proc.signalCode === null)
      const cur = await agreedLeader(live, 30_000)
      if (cur === undefined) throw new Error('no agreed leader')
      const leader = live.find(a => a.id === cur.leader)!
      const rest = live.filter(a => a !== leader)
      const apis = await Promise.all(rest.map(apiOf))
      const killedAt = Date.now()
      await leader.kill9()
      // Time until a write through a survivor commits under a new leader.
      let committed = -1
      const attempts: string[] = []
      for (let attempt = 0; committed < 0 && Date.now() - killedAt < 30_000; attempt++) {
        const api = apis[attempt % apis.length]!
        const t0 = Date.now() - killedAt
        try {
          const r = await kv(api, 'PUT', `/v1/kv/failover-${i}`, { value: String(attempt) }, 12_000)
          if (r.status === 200) committed = Date.now() - killedAt
          attempts.push(`${t0}-${Date.now() - killedAt}ms via ${attempt % apis.length}: ${r.status} ${r.status === 200 ? '' : JSON.stringify(r.body).slice(0, 120)}`)
        } catch (err) {
          attempts.push(`${t0}-${Date.now() - killedAt}ms via ${attempt % apis.length}: ${(err as Error).message.slice(0, 120)}`)
        }
      }
      times.push(committed)
      if (committed < 0 || committed > 1.5 * ELECTION_TIMEOUT_MS) {
        const now = await agreedLeader(rest, 5000)
        slowRounds.push({ voters, ms: committed, terms: now === undefined ? -1 : now.term - cur.term, attempts })
      }
      // Restart the old leader so the cluster keeps its size.
      await leader.start(['start'])
    }
  } finally {
    await cluster.destroy()
  }
  return times
}

export const scenario: Scenario = {
  name: 'raft-failover',
  description: 'kill -9 the leader repeatedly; time until a new leader commits, vs the election timeout',
  async run ({ quick }) {
    const rounds = quick ? 4 : 20
    const three = await failovers(3, rounds)
    const five = await failovers(5, rounds)
    const ratio = (xs: number[], p: number): number => percentile(xs.filter(x => x >= 0), p) / ELECTION_TIMEOUT_MS
    const figures = {
      rounds,
      p50Ratio3: ratio(three, 50),
      p99Ratio3: ratio(three, 99),
      p50Ratio5: ratio(five, 50),
      p99Ratio5: ratio(five, 99),
      failedRounds: [...three, ...five].filter(x => x < 0).length
    }
    return {
      name: 'raft-failover',
      figures,
      goal: 'p99Ratio <= 1.5 for 3 and 5 voters',
      met: figures.p99Ratio3 <= 1.5 && figures.p99Ratio5 <= 1.5 && figures.failedRounds === 0,
      config: { electionTimeoutMs: ELECTION_TIMEOUT_MS, samples3: three, samples5: five, slowRounds }
    }
  }
}
