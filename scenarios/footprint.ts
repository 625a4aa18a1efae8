// footprint: idle RSS of one joined agent (goal <= 80 MB) and the time from
// process start to `alive` in the cluster (goal <= 1 s).
import { Cluster, waitFor } from '../test/helpers/harness.js'
import type { Scenario } from './report.js'
import { rssBytes } from './_membership.js'

export const scenario: Scenario = {
  name: 'footprint',
  description: 'idle RSS of a joined agent and time from process start to alive',
  async run ({ quick }) {
    const cluster = await Cluster.create('')
    try {
      const seed = await cluster.add('seed')
      await seed.start(['init'])
      const joiner = await cluster.add('joiner')
      const t0 = Date.now()
      const readyP = joiner.start(['join', seed.ready!.node.addrs.find(a => a.includes('/quic-v1'))!, '--token', seed.ready!.token])
      await readyP
      const aliveMs = await waitFor(async () => (await seed.status())?.members.find(m => m.id === joiner.id)?.state === 'alive', 30_000, 20)
      const startToAlive = aliveMs < 0 ? Number.NaN : (Date.now() - t0) / 1000
      await new Promise(resolve => setTimeout(resolve, quick ? 10_000 : 60_000))
      const rss = await rssBytes(joiner.proc!.pid!)
      const rssMB = rss / 1024 / 1024
      return {
        name: 'footprint',
        figures: { idleRssMB: rssMB, secondsStartToAlive: startToAlive, rssRatioToGoal: rssMB / 80, aliveRatioToGoal: startToAlive / 1 },
        goal: 'idleRssMB <= 80 and secondsStartToAlive <= 1',
        met: rssMB <= 80 && startToAlive <= 1,
        config: { idleSeconds: quick ? 10 : 60, profile: 'lan' }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
