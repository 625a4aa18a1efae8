// kv-linearizable: 5 real agents; concurrent clients do put/get/cas through
// different agents while leaders are killed (-9) and processes paused
// (SIGSTOP); the history is checked for linearizability. Figures: operations
// checked and violations (goal 0).
import { Cluster, type AgentProcess } from '../test/helpers/harness.js'
import type { Scenario } from './report.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from './_raft.js'
import { checkHistory, type KvOp } from './lin-check.js'

const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4']
const VALUES = ['a', 'b', 'c', 'd']

function alive (a: AgentProcess): boolean { return a.proc !== undefined && a.proc.exitCode === null && a.proc.signalCode === null }

export async function runLinearizability (opts: { seconds: number, clients: number, agents: number, faults: boolean }): Promise<{ history: KvOp[], faults: string[] }> {
  const cluster = await Cluster.create(RAFT_TOML(Math.min(opts.agents, 5)))
  const history: KvOp[] = []
  const faults: string[] = []
  try {
    const agents = await formVoters(cluster, opts.agents)
    const t0 = performance.now()
    const now = (): number => performance.now() - t0
    const end = Date.now() + opts.seconds * 1000
    const client = async (c: number): Promise<void> => {
      let seq = 0
      while (Date.now() < end) {
        const a = agents[(c + seq++) % agents.length]!
        if (!alive(a)) { await new Promise(resolve => setTimeout(resolve, 50)); continue }
        let api
        try { api = await apiOf(a) } catch { continue }
        const key = KEYS[Math.floor(Math.random() * KEYS.length)]!
        const kind = (['get', 'put', 'cas'] as const)[Math.floor(Math.random() * 3)]!
        const value = VALUES[Math.floor(Math.random() * VALUES.length)]!
        const old = VALUES[Math.floor(Math.random() * VALUES.length)]!
        const call = now()
        try {
          if (kind === 'get') {
            const r = await kv(api, 'GET', `/v1/kv/${key}`, undefined, 4000)
            if (r.status === 200) history.push({ kind, key, call, ret: now(), out: r.body.value as string })
            else if (r.status === 404) history.push({ kind, key, call, ret: now(), out: null })
            // any other failure of a read has no effect: leave it out
          } else if (kind === 'put') {
            const r = await kv(api, 'PUT', `/v1/kv/${key}`, { value }, 4000)
            history.push({ kind, key, call, ret: now(), value, out: r.status === 200 ? 'ok' : undefined })
          } else {
            const r = await kv(api, 'POST', `/v1/kv/${key}/cas`, { old, new: value }, 4000)
            history.push({ kind, key, call, ret: now(), old, value, out: r.status === 200 ? r.body.swapped === true : undefined })
          }
        } catch {
          // Timed out or the agent died: a write may or may not have happened.
          if (kind === 'put') history.push({ kind, key, call, ret: 0, value, out: undefined })
          if (kind === 'cas') history.push({ kind, key, call, ret: 0, old, value, out: undefined })
        }
      }
    }
    const nemesis = async (): Promise<void> => {
      let round = 0
      while (opts.faults && Date.now() < end - 3000) {
        await new Promise(resolve => setTimeout(resolve, 4000))
        const live = agents.filter(alive)
        if (round++ % 2 === 0) {
          const lead = await agreedLeader(live, 5000)
          const victim = live.find(a => a.id === lead?.leader)
          if (victim === undefined) continue
          faults.push(`kill -9 leader ${victim.name} at ${Math.round(now())} ms`)
          await victim.kill9()
          await new Promise(resolve => setTimeout(resolve, 1500))
          await victim.start(['start']).catch(err => { faults.push(`restart failed: ${(err as Error).message}`) })
        } else {
          const victim = live[Math.floor(Math.random() * live.length)]!
          faults.push(`SIGSTOP ${victim.name} at ${Math.round(now())} ms for 2 s`)
          victim.signal('SIGSTOP')
          await new Promise(resolve => setTimeout(resolve, 2000))
          victim.signal('SIGCONT')
        }
      }
    }
    await Promise.all([...Array.from({ length: opts.clients }, async (_, c) => await client(c)), nemesis()])
  } finally {
    await cluster.destroy()
  }
  return { history, faults }
}

export const scenario: Scenario = {
  name: 'kv-linearizable',
  description: '5 agents, concurrent put/get/cas through different agents under kill -9 and SIGSTOP; linearizability check',
  async run ({ quick }) {
    const { history, faults } = await runLinearizability({ seconds: quick ? 20 : 60, clients: 8, agents: 5, faults: true })
    const res = checkHistory(history)
    return {
      name: 'kv-linearizable',
      figures: { operationsChecked: res.operations, keys: res.keys, violations: res.violations.length, undecidedKeys: res.undecided.length, faults: faults.length },
      goal: 'violations == 0',
      met: res.violations.length === 0 && res.undecided.length === 0,
      config: { agents: 5, clients: 8, faultLog: faults }
    }
  }
}
