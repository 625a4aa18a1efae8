// Issue #25: kill -9 of the Raft leader while 64 writers keep writing through
// every member (real agents, writes forwarded by followers to the leader).
// Afterwards every acknowledged write is readable, with its value, from every
// member, the killed one restarted included (linearizable reads).
import t from 'tap'
import { Cluster, waitFor } from '../helpers/harness.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv } from '../../scenarios/_raft.js'

const WRITERS = 64

t.test('kill -9 of the leader during 64 concurrent writers: every acknowledged write survives on every member', async t => {
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const agents = await formVoters(cluster, 3)
  const first = await agreedLeader(agents, 15_000)
  t.ok(first, 'a leader every member agrees on')
  const leader = agents.find(a => a.id === first!.leader)!
  const apis = new Map(await Promise.all(agents.map(async a => [a.id, await apiOf(a)] as const)))

  const acked: string[] = []
  let live = agents.map(a => a.id)
  let stop = false
  const writers = Array.from({ length: WRITERS }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      const key = `w${w}-${i}`
      // Spread over the members alive: followers forward to the leader.
      const target = apis.get(live[(w + i) % live.length]!)!
      const r = await kv(target, 'PUT', `/v1/kv/${key}`, { value: `v-${key}` }, 15_000).catch(() => undefined)
      if (r?.status === 200) acked.push(key)
      else await new Promise(resolve => setTimeout(resolve, 50))
    }
  })
  try {
    t.ok(await waitFor(async () => acked.length >= 300, 60_000, 50) >= 0, 'writes are acknowledged before the kill')
    live = live.filter(id => id !== leader.id)
    await leader.kill9()
    const atKill = acked.length
    const resumed = await waitFor(async () => acked.length >= atKill + 300, 60_000, 50)
    t.ok(resumed >= 0, `writes go on after the leader is killed (${acked.length - atKill} more acknowledged)`)
  } finally {
    stop = true
    await Promise.all(writers)
  }
  const next = await agreedLeader(agents.filter(a => a !== leader), 15_000, leader.id)
  t.ok(next !== undefined && next.leader !== leader.id, 'the survivors agree on a new leader')
  await leader.start(['start'])
  t.ok(await agreedLeader(agents, 30_000), 'the restarted member follows the new leader')

  t.ok(acked.length >= 600, `${acked.length} writes acknowledged in all`)
  for (const a of agents) {
    const api = await apiOf(a) // the restarted member listens anew
    const missing: string[] = []
    let next = 0
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < acked.length) {
        const key = acked[next++]!
        const r = await kv(api, 'GET', `/v1/kv/${key}`, undefined, 15_000).catch(() => undefined)
        if (r?.status !== 200 || r.body.value !== `v-${key}`) missing.push(key)
      }
    }))
    t.same(missing.slice(0, 10), [], `${a.name}${a === leader ? ' (the killed leader, restarted)' : ''}: all ${acked.length} acknowledged writes read back (${missing.length} missing)`)
  }
})
