// join-32: 32 agents join through one seed; figure: seconds until every
// agent sees 32 members alive.
import { Cluster, waitFor } from '../test/helpers/harness.js'
import type { Scenario } from './report.js'
import { aliveCount, formInBatches } from './_membership.js'

export const scenario: Scenario = {
  name: 'join-32',
  description: '32 agents join through one seed; time until every agent sees all alive',
  async run ({ quick }) {
    const n = quick ? 12 : 32
    const cluster = await Cluster.create('')
    try {
      const start = Date.now()
      const agents = await formInBatches(cluster, n)
      const joinedMs = Date.now() - start
      const converged = await waitFor(async () => {
        const counts = await Promise.all(agents.map(aliveCount))
        return counts.every(c => c === n)
      }, 120_000, 500)
      const total = converged < 0 ? Number.NaN : (Date.now() - start) / 1000
      return {
        name: 'join-32',
        figures: { agents: n, secondsToAllAlive: total, secondsToStartAll: joinedMs / 1000 },
        goal: 'every agent sees all members alive (time reported; no fixed goal)',
        met: converged >= 0,
        config: { profile: 'lan', batch: 8 }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
