// Shared pieces of the membership scenarios.
import { readFile } from 'node:fs/promises'
import type { AgentProcess, Cluster } from '../test/helpers/harness.js'

/** Forms a cluster of n: init one, then joins in batches so 2 cores keep up. */
export async function formInBatches (cluster: Cluster, n: number, batch = 8): Promise<AgentProcess[]> {
  const first = await cluster.add('a0')
  await first.start(['init'])
  const seed = first.ready!.node.addrs.find(a => a.includes('/quic-v1'))!
  const all = [first]
  for (let i = 1; i < n; i += batch) {
    const group = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, async (_, j) => {
      const a = await cluster.add(`a${i + j}`)
      await a.start(['join', seed, '--token', first.ready!.token], 60_000)
      return a
    }))
    all.push(...group)
  }
  return all
}

export async function aliveCount (a: AgentProcess): Promise<number> {
  const s = await a.status()
  return s?.members.filter(m => m.state === 'alive').length ?? -1
}

export async function rssBytes (pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /VmRSS:\s+(\d+) kB/.exec(text)
  return m === null ? Number.NaN : Number(m[1]) * 1024
}
