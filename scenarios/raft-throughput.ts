// raft-throughput: 3 voters, 1 and 64 concurrent proposers of 256-byte
// entries through the leader's API; figure: committed entries/s as a ratio
// to raw `level` batched sync-write throughput measured in the same run
// (goal >= 0.5 at 64 proposers).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { Cluster } from './harness.js'
import type { Scenario } from './report.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from './_raft.js'

const VALUE = 'v'.repeat(256)

async function levelBaseline (batch: number, seconds: number): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-level-'))
  const db = new Level<string, string>(dir)
  try {
    await db.open()
    let n = 0
    const end = Date.now() + seconds * 1000
    const start = Date.now()
    while (Date.now() < end) {
      const ops = Array.from({ length: batch }, () => ({ type: 'put' as const, key: String(n++).padStart(12, '0'), value: VALUE }))
      await db.batch(ops, { sync: true })
    }
    return n / ((Date.now() - start) / 1000)
  } finally {
    await db.close()
    await rm(dir, { recursive: true, force: true })
  }
}

async function proposers (api: { url: string, token: string }, concurrency: number, seconds: number): Promise<number> {
  let committed = 0
  const end = Date.now() + seconds * 1000
  const start = Date.now()
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    let i = 0
    while (Date.now() < end) {
      const r = await kv(api, 'PUT', `/v1/kv/t${w}-${i++ % 100}`, { value: VALUE }, 10_000).catch(() => undefined)
      if (r?.status === 200) committed++
    }
  }))
  return committed / ((Date.now() - start) / 1000)
}

export const scenario: Scenario = {
  name: 'raft-throughput',
  description: '3 voters, 1 and 64 proposers of 256-byte entries vs raw level batched sync writes',
  async run ({ quick }) {
    const seconds = quick ? 5 : 20
    const cluster = await Cluster.create(RAFT_TOML(3))
    try {
      const agents = await formVoters(cluster, 3)
      const lead = await agreedLeader(agents, 30_000)
      const leader = agents.find(a => a.id === lead?.leader)
      if (leader === undefined) throw new Error('no leader')
      const api = await apiOf(leader)
      const one = await proposers(api, 1, seconds)
      const many = await proposers(api, 64, seconds)
      const base1 = await levelBaseline(1, seconds)
      const base64 = await levelBaseline(64, seconds)
      return {
        name: 'raft-throughput',
        figures: { entriesPerSec1: one, entriesPerSec64: many, levelSyncPerSec1: base1, levelBatch64PerSec: base64, ratio1: one / base1, ratio64: many / base64 },
        goal: 'ratio64 >= 0.5',
        met: many / base64 >= 0.5,
        config: { voters: 3, entryBytes: 256, seconds, client: 'HTTP API of the leader' }
      }
    } finally {
      await cluster.destroy()
    }
  }
}
