// Security issue #21, finding 5, against real agents: a member that joined
// with the token and then misbehaves on /bolt/api/1 and /bolt/raft/1. The
// leader refuses its forwarded garbage, oversized, unknown and unauthorized
// commands, no replica stalls, and its Raft messages cannot move the term.
import t from 'tap'
import { encode } from 'cbor-x'
import { Cluster, seedAddr, waitFor, type AgentProcess } from '../helpers/harness.js'
import { RAFT_TOML, agreedLeader, apiOf, kv, voters } from '../../scenarios/_raft.js'
import type { Message } from '../../consensus/index.js'
import { RogueMember } from '../helpers/rogue-member.js'

async function metric (a: AgentProcess, name: string): Promise<number> {
  const api = await apiOf(a)
  const res = await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(5000) })
  const line = (await res.text()).split('\n').find(l => l.startsWith(name + ' '))
  return line === undefined ? -1 : Number(line.split(' ')[1])
}

/** Three voters, joined one at a time with generous start timeouts (the test machine is shared and slow). */
async function threeVoters (cluster: Cluster): Promise<AgentProcess[]> {
  const first = await cluster.add('a0')
  await first.start(['init'], 120_000)
  const agents = [first]
  for (const name of ['a1', 'a2']) {
    const a = await cluster.add(name)
    await a.start(['join', seedAddr(first, 'quic'), '--token', first.ready!.token], 120_000)
    agents.push(a)
  }
  if (await waitFor(async () => (await voters(first)) === 3, 120_000, 500) < 0) throw new Error('3 voters not formed within 120 s')
  return agents
}

t.test('a rogue member cannot push the cluster\'s Raft around', async t => {
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const agents = await threeVoters(cluster)
  const lead = await agreedLeader(agents, 60_000)
  if (lead === undefined) throw new Error('no agreed leader')
  const leader = agents.find(a => a.id === lead.leader)!
  const rogue = await RogueMember.join(seedAddr(agents[0]!, 'quic'), agents[0]!.ready!.token)
  t.teardown(async () => { await rogue.stop() })
  const leaderAddr = seedAddr(leader, 'quic')

  await t.test('forwarded garbage, oversized, unknown and unauthorized commands are refused; the cluster keeps applying', async t => {
    const huge = new Uint8Array(500)
    huge.set([0x9b, 0, 0, 0, 1, 0, 0, 0, 0]) // an array header claiming 2^32 items: seconds of cbor-x per decode
    const cases: Array<[string, Uint8Array, string]> = [
      ['random garbage', Uint8Array.from({ length: 300 }, (_, i) => (i * 151 + 7) & 0xff), 'CommandDecodeError'],
      ['a 2^32-item array header', huge, 'CommandDecodeError'],
      ['an oversized put (900 KiB)', encode({ op: 'put', req: 'rogue-req', key: 'k', value: 'x'.repeat(900 * 1024) }) as Uint8Array, 'CommandTooLargeError'],
      ['an unknown command', encode({ op: 'cluster.wipe', req: 'rogue-req' }) as Uint8Array, 'UnknownCommandError'],
      ['a placement (the leader\'s scheduler only)', encode({ op: 'capsule.place', req: 'rogue-req', instance: 'x', node: rogue.id, gpuIndexes: [], generation: 0 }) as Uint8Array, 'CommandRefusedError'],
      ['a status report for another node', encode({ op: 'capsule.report', req: 'rogue-req', instance: 'x', node: leader.id, generation: 1, state: 'failed', exitCode: 1, reason: 'rogue', restarts: 0 }) as Uint8Array, 'CommandRefusedError']
    ]
    const before = await metric(leader, 'bolt_raft_refused_commands_total')
    for (const [what, data, name] of cases) {
      const res = await rogue.forward(leaderAddr, data)
      t.equal(res.ok, false, `${what}: refused`)
      t.equal(res.ok ? undefined : res.name, name, `${what}: ${name}`)
    }
    t.equal(await metric(leader, 'bolt_raft_refused_commands_total'), before + cases.length, 'the leader counted each refusal')
    // A normal write through a follower commits and is applied by every replica.
    const follower = agents.find(a => a !== leader)!
    const w = await kv(await apiOf(follower), 'PUT', '/v1/kv/after-rogue', { value: 'still-fine' }, 60_000)
    t.equal(w.status, 200, 'a later write commits')
    for (const a of agents) {
      const r = await kv(await apiOf(a), 'GET', '/v1/kv/after-rogue', undefined, 60_000)
      t.equal(r.body.value, 'still-fine', `${a.name} applied it`)
    }
  })

  await t.test('Raft messages with a higher term from a non-voter are ignored: no term change, no election', async t => {
    const now = await agreedLeader(agents, 60_000)
    if (now === undefined) throw new Error('no agreed leader')
    const term = now.term + 100
    for (const a of agents) {
      const before = await metric(a, 'bolt_raft_refused_messages_total')
      const msgs: Message[] = [
        { type: 'app', from: rogue.id, to: a.id, term, index: 1_000_000, logTerm: term, commit: 1_000_001, entries: [{ type: 'normal', term, index: 1_000_001, data: new Uint8Array([1]) }] },
        { type: 'heartbeat', from: rogue.id, to: a.id, term, commit: 1_000_001 },
        { type: 'vote', from: rogue.id, to: a.id, term, index: 1_000_000, logTerm: term, transfer: true },
        { type: 'timeoutNow', from: rogue.id, to: a.id, term }
      ]
      await rogue.raftSend(seedAddr(a, 'quic'), msgs)
      const seen = await waitFor(async () => await metric(a, 'bolt_raft_refused_messages_total') >= before + msgs.length, 60_000)
      t.ok(seen >= 0, `${a.name} dropped all ${msgs.length} messages`)
    }
    const after = await agreedLeader(agents, 60_000)
    t.same(after, now, 'the same leader in the same term')
  })
})
