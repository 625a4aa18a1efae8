// Issue "Raft…": real agent processes, kill -9, a 2-of-3 partition through the
// fault hook, and autopilot replacing a dead voter.
import t from 'tap'
import { Cluster, waitFor, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML, agreedLeader, apiOf, formVoters, kv, voters } from '../../scenarios/_raft.js'

async function partition (a: AgentProcess, peers: string[]): Promise<void> {
  const api = await apiOf(a)
  const res = await fetch(`${api.url}/v1/debug/partition`, { method: 'POST', headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ peers }) })
  if (!res.ok) throw new Error(`partition failed on ${a.name}`)
}

t.test('leader election, failover, durability under kill -9, partitions', async t => {
  const cluster = await Cluster.create(RAFT_TOML(3) + '\n[debug]\nenabled = true\n')
  t.teardown(async () => { await cluster.destroy() })
  const agents = await formVoters(cluster, 3)

  const first = await agreedLeader(agents, 30_000)
  t.ok(first, 'every member names the same leader and term')

  // How fast is the `raft-failover` bench's figure; here only that a new leader comes (the bound is a liveness cut-off).
  await t.test('kill -9 the leader: the others elect a new one', async t => {
    const old = agents.find(a => a.id === first!.leader)!
    const rest = agents.filter(a => a !== old)
    await old.kill9()
    const start = Date.now()
    const next = await agreedLeader(rest, 30_000, old.id)
    const took = Date.now() - start
    t.ok(next !== undefined && next.leader !== old.id, `a new leader (${took} ms including status polling)`)
    t.ok(next !== undefined && next.term > first!.term, 'in a higher term')
    await old.start(['start'])
    t.ok(await agreedLeader(agents, 15_000), 'the restarted node follows the new leader')
  })

  await t.test('kill -9 a voter during heavy writes: nothing acknowledged is lost', async t => {
    const lead = await agreedLeader(agents, 10_000)
    const leader = agents.find(a => a.id === lead!.leader)!
    const victim = agents.find(a => a !== leader)!
    const api = await apiOf(leader)
    const acked: string[] = []
    let stop = false
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const key = `w${w}-${i}`
        const r = await kv(api, 'PUT', `/v1/kv/${key}`, { value: key }, 10_000).catch(() => undefined)
        if (r?.status === 200) acked.push(key)
      }
    })
    await new Promise(resolve => setTimeout(resolve, 1500))
    await victim.kill9()
    await new Promise(resolve => setTimeout(resolve, 1500))
    await victim.start(['start'])
    await new Promise(resolve => setTimeout(resolve, 1000))
    stop = true
    await Promise.all(writers)
    t.ok(acked.length > 20, `${acked.length} writes acknowledged`)
    // The restarted voter must serve every acknowledged write (linearizable reads).
    const vapi = await apiOf(victim)
    const sample = acked.filter((_, i) => i % Math.max(1, Math.floor(acked.length / 40)) === 0)
    let missing = 0
    for (const key of sample) {
      const r = await kv(vapi, 'GET', `/v1/kv/${key}`, undefined, 10_000).catch(() => undefined)
      if (r?.status !== 200 || r.body.value !== key) missing++
    }
    t.equal(missing, 0, `all ${sample.length} sampled acknowledged writes read back through the restarted voter`)
    const caught = await waitFor(async () => {
      const sts = await Promise.all(agents.map(async a => await a.status()))
      return sts.every(s => s !== undefined && s.leader === sts[0]?.leader)
    }, 10_000)
    t.ok(caught >= 0, 'all members agree on the leader again')
  })

  await t.test('a 2-of-3 partition: the minority never commits and its leader steps down; healing converges', async t => {
    const lead = await agreedLeader(agents, 10_000)
    const leader = agents.find(a => a.id === lead!.leader)!
    const others = agents.filter(a => a !== leader)
    // Isolate the leader: it becomes the minority of one.
    await partition(leader, others.map(a => a.id))
    for (const o of others) await partition(o, [leader.id])
    const lapi = await apiOf(leader)
    const minorityWrite = await kv(lapi, 'PUT', '/v1/kv/minority', { value: 'x' }, 12_000).catch(() => undefined)
    t.not(minorityWrite?.status, 200, 'a write through the isolated old leader does not commit')
    // Reads that need the leader still answer from the cut-off node's copy, and say so.
    const ps = await fetch(`${lapi.url}/v1/capsules`, { headers: { authorization: `Bearer ${lapi.token}` }, signal: AbortSignal.timeout(15_000) })
    t.equal(ps.status, 200, 'ps through the isolated node answers')
    t.equal(ps.headers.get('x-bolt-stale'), '1', 'marked as read from a copy that may be stale')
    const stepped = await waitFor(async () => (await leader.status())?.leader !== leader.id, 10_000)
    t.ok(stepped >= 0, 'the isolated old leader steps down (check-quorum)')
    const majority = await agreedLeader(others, 10_000)
    t.ok(majority !== undefined && majority.leader !== leader.id, 'the majority elects a new leader')
    const oapi = await apiOf(others[0]!)
    const w = await kv(oapi, 'PUT', '/v1/kv/majority', { value: 'y' }, 10_000)
    t.equal(w.status, 200, 'the majority commits')
    // Heal.
    for (const a of agents) await partition(a, [])
    const healed = await agreedLeader(agents, 20_000)
    t.ok(healed, 'after healing all agree on one leader')
    // Removing it would not have shrunk the quorum (3 voters, 1 cut off): it
    // comes back a voter, not a learner to re-add and promote.
    const role = (await others[0]!.status())?.members.find(m => m.id === leader.id)?.role
    t.equal(role, 'server', 'the cut-off voter was not removed by autopilot')
    const r1 = await kv(lapi, 'GET', '/v1/kv/majority', undefined, 10_000)
    t.equal(r1.body.value, 'y', 'the old leader sees the majority\'s write')
    const r2 = await kv(lapi, 'GET', '/v1/kv/minority', undefined, 10_000)
    t.equal(r2.status, 404, 'the minority\'s write never committed')
  })
})

t.test('autopilot replaces a dead voter with a healthy client', async t => {
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const agents = await formVoters(cluster, 3)
  const extra = await cluster.add('a3')
  await extra.start(['join', agents[0]!.ready!.node.addrs.find(a => a.includes('/quic-v1'))!, '--token', agents[0]!.ready!.token])
  const isClient = await waitFor(async () => (await agents[0]!.status())?.members.find(m => m.id === extra.id)?.role === 'client', 20_000)
  t.ok(isClient >= 0, 'a 4th member joins as a client while 3 voters exist')
  const lead = await agreedLeader(agents, 10_000)
  const victim = agents.find(a => a.id !== lead!.leader)!
  await victim.kill9()
  const survivors = [...agents.filter(a => a !== victim), extra]
  // dead_voter_grace_ms = 5 s in RAFT_TOML, plus failure detection.
  const promoted = await waitFor(async () => {
    const s = await survivors[0]!.status()
    return s?.members.find(m => m.id === extra.id)?.role === 'server' && !(s.members.some(m => m.id === victim.id && m.role === 'server'))
  }, 45_000, 500)
  t.ok(promoted >= 0, 'the client is promoted to voter and the dead voter removed')
  t.equal(await voters(survivors[0]!), 3, 'three alive voters again')
  const api = await apiOf(survivors[0]!)
  const w = await kv(api, 'PUT', '/v1/kv/after-autopilot', { value: 'ok' }, 10_000)
  t.equal(w.status, 200, 'the cluster keeps accepting writes')
})
