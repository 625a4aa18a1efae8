// lossy-5: 16 agents, 5% of membership messages dropped (fault hook in the
// membership transport) for 5 minutes; figure: false `dead` verdicts.
import { Cluster, waitFor } from '../test/helpers/harness.js'
import type { Scenario } from './report.js'
import { aliveCount, formInBatches } from './_membership.js'

export const scenario: Scenario = {
  name: 'lossy-5',
  description: '16 agents with 5% membership message loss; false dead verdicts (goal 0)',
  async run ({ quick }) {
    const n = quick ? 8 : 16
    const durationMs = quick ? 60_000 : 5 * 60_000
    // The drop-rate fault hook exists only with [debug] enabled.
    const cluster = await Cluster.create('[debug]\nenabled = true\n')
    try {
      const agents = await formInBatches(cluster, n)
      await waitFor(async () => (await Promise.all(agents.map(aliveCount))).every(c => c === n), 120_000, 500)
      for (const a of agents) {
        const r = await a.cli(['--json', 'status'])
        if (r.code !== 0) throw new Error(`${a.name} not answering`)
        const api = JSON.parse(await (await import('node:fs/promises')).readFile(`${a.dataDir}/api.json`, 'utf8')) as { url: string, token: string }
        const res = await fetch(`${api.url}/v1/debug/drop-rate`, { method: 'POST', headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ rate: 0.025 }) })
        if (!res.ok) throw new Error(`cannot set drop rate on ${a.name}`)
      }
      const falseDead = new Set<string>()
      let suspectSightings = 0
      const end = Date.now() + durationMs
      while (Date.now() < end) {
        for (const a of agents) {
          const s = await a.status()
          for (const m of s?.members ?? []) {
            if (m.state === 'dead') falseDead.add(`${a.name}->${m.name}`)
            if (m.state === 'suspect') suspectSightings++
          }
        }
        await new Promise(resolve => setTimeout(resolve, 1000))
      }
      return {
        name: 'lossy-5',
        figures: { agents: n, seconds: durationMs / 1000, dropRate: 0.05, perAgentDropRate: 0.025, falseDeadVerdicts: falseDead.size, suspectSightings },
        goal: 'falseDeadVerdicts == 0',
        met: falseDead.size === 0,
        config: { profile: 'lan', faultHook: 'membership drop rate 0.025 on every agent, applied at sender and receiver: about 5% of messages lost' }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
