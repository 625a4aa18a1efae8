// detect-kill: 16 agents, kill -9 one; figure: seconds until every other
// agent marks it dead, as a ratio to the configured suspicion bound.
import { Cluster, waitFor } from '../test/helpers/harness.js'
import type { Scenario } from './report.js'
import { aliveCount, formInBatches } from './_membership.js'
import { LAN } from '../p2p/membership/profiles.js'
import { suspicionBoundMs } from '../p2p/membership/core/suspicion.js'

export const scenario: Scenario = {
  name: 'detect-kill',
  description: '16 agents, kill -9 one, time until all others mark it dead vs the suspicion bound',
  async run ({ quick }) {
    const n = quick ? 8 : 16
    const cluster = await Cluster.create('')
    try {
      const agents = await formInBatches(cluster, n)
      await waitFor(async () => (await Promise.all(agents.map(aliveCount))).every(c => c === n), 120_000, 500)
      const victim = agents[n - 1]!
      const others = agents.slice(0, n - 1)
      const killedAt = Date.now()
      await victim.kill9()
      const took = await waitFor(async () => {
        const states = await Promise.all(others.map(async a => (await a.status())?.members.find(m => m.id === victim.id)?.state))
        return states.every(s => s === 'dead')
      }, 120_000, 100)
      const seconds = took < 0 ? Number.NaN : (Date.now() - killedAt) / 1000
      const boundMs = suspicionBoundMs(LAN, n)
      const ratio = seconds * 1000 / boundMs
      const goal = 1 + LAN.probeIntervalMs / boundMs
      return {
        name: 'detect-kill',
        figures: { agents: n, secondsToAllDead: seconds, suspicionBoundSeconds: boundMs / 1000, ratioToBound: ratio },
        goal: `ratioToBound <= ${goal.toFixed(3)} (1.0 plus one probe interval)`,
        met: ratio <= goal,
        config: { profile: 'lan', probeIntervalMs: LAN.probeIntervalMs, suspicionMult: LAN.suspicionMult }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
