import t from 'tap'
import { RaftStoppedError, type LeaderChange } from '../../consensus/index.js'
import { TestCluster, until } from './helpers.js'

const enc = new TextEncoder()

t.test('a one-voter cluster elects itself and commits at once', async t => {
  const c = new TestCluster()
  const m = c.add('a', ['a'])
  const changes: LeaderChange[] = []
  m.node.on('leaderChange', ch => { changes.push(ch) })
  await m.node.start()
  await until(() => m.node.status().role === 'leader', 'leader')
  const r = await m.node.propose(enc.encode('x'))
  t.same(m.applied, ['x'])
  t.equal(m.node.status().applied, r.index)
  t.ok(changes.some(ch => ch.leader === 'a' && ch.role === 'leader'))
  await m.node.readIndex()
  await c.stopAll()
})

t.test('three voters: propose on the leader, NotLeaderError with a hint elsewhere, reads, transfer, stop', async t => {
  const c = new TestCluster()
  const ids = ['a', 'b', 'c']
  for (const id of ids) c.add(id, ids)
  for (const m of c.members.values()) await m.node.start()
  await until(() => c.leader() !== undefined && [...c.members.values()].every(m => m.node.status().leader === c.leader()?.id), 'agreed leader')
  const leader = c.leader()
  if (leader === undefined) throw new Error('no leader')
  for (let i = 0; i < 50; i++) await leader.node.propose(enc.encode(`v${i}`))
  const follower = [...c.members.values()].find(m => m !== leader)
  if (follower === undefined) throw new Error('no follower')
  await t.rejects(follower.node.propose(enc.encode('nope')), { name: 'NotLeaderError', leader: leader.id })
  // A follower's read waits until its state machine has caught up with the leader's commit.
  await follower.node.readIndex()
  t.equal(follower.applied.length, 50)
  // Concurrent proposals are batched and all acknowledged.
  const many = await Promise.all(Array.from({ length: 200 }, async (_, i) => await leader.node.propose(enc.encode(`w${i}`))))
  t.equal(new Set(many.map(r => r.index)).size, 200)
  await until(() => [...c.members.values()].every(m => m.applied.length === 250), 'all applied')
  t.same(follower.applied, leader.applied)
  t.ok(leader.node.status().snapshotIndex > 0, 'log compacted past the threshold')
  t.equal(Object.keys(leader.node.status().progress).length, 3)
  await leader.node.transferLeadership(follower.id)
  await until(() => follower.node.status().role === 'leader', 'transferred')
  await follower.node.propose(enc.encode('after-transfer'))
  await c.stopAll()
  await t.rejects(follower.node.propose(enc.encode('stopped')), RaftStoppedError)
})

t.test('membership: add a learner, promote it, remove a voter; the new member catches up by snapshot', async t => {
  const c = new TestCluster()
  const a = c.add('a', ['a'])
  await a.node.start()
  await until(() => a.node.status().role === 'leader', 'leader')
  for (let i = 0; i < 60; i++) await a.node.propose(enc.encode(`v${i}`))
  const b = c.add('b', undefined) // joins empty
  const seen: string[] = []
  b.node.on('configChange', ch => { seen.push(`${ch.change.type} ${ch.change.node}`) })
  await b.node.start()
  await a.node.addLearner('b')
  t.same(a.node.status().learners, ['b'])
  await until(() => b.applied.length === 60, 'learner caught up')
  await a.node.promote('b')
  t.same(a.node.status().voters, ['a', 'b'])
  await until(() => seen.includes('promote b'), 'b applied its promotion')
  t.ok(b.restores > 0, 'the learner was caught up by a snapshot')
  const d = c.add('d', undefined)
  await d.node.start()
  await a.node.addLearner('d')
  await a.node.promote('d')
  await a.node.propose(enc.encode('three-voters'))
  await a.node.removeServer('b')
  t.same(a.node.status().voters, ['a', 'd'])
  await a.node.propose(enc.encode('after-remove'))
  await until(() => d.applied.includes('after-remove'), 'd applied')
  await t.rejects(a.node.promote('zzz'), { name: 'ConfChangeError' })
  await c.stopAll()
})

t.test('a partitioned leader steps down; the majority elects a new one and keeps committing', async t => {
  const c = new TestCluster()
  const ids = ['a', 'b', 'c']
  for (const id of ids) c.add(id, ids)
  for (const m of c.members.values()) await m.node.start()
  await until(() => c.leader() !== undefined, 'leader')
  const old = c.leader()
  if (old === undefined) throw new Error('no leader')
  c.cut.add(old.id)
  await until(() => old.node.status().role !== 'leader', 'old leader steps down (check-quorum)')
  await until(() => c.leader() !== undefined, 'new leader')
  const fresh = c.leader()
  if (fresh === undefined) throw new Error('no new leader')
  await fresh.node.propose(enc.encode('majority'))
  c.cut.clear()
  await until(() => old.applied.includes('majority'), 'old leader caught up after heal')
  t.equal(old.node.status().leader, fresh.id)
  await c.stopAll()
})

t.test('requests honour AbortSignal; a read without a known leader fails fast', async t => {
  const c = new TestCluster()
  const ids = ['a', 'b', 'c']
  const a = c.add('a', ids)
  await a.node.start()
  // Alone, 'a' never learns a leader.
  await t.rejects(a.node.readIndex(), { name: 'NotLeaderError' })
  await t.rejects(a.node.propose(enc.encode('x')), { name: 'NotLeaderError', leader: null })
  const ac = new AbortController()
  ac.abort(new Error('caller gave up'))
  await t.rejects(a.node.propose(enc.encode('x'), ac.signal), /caller gave up/)
  await t.rejects(a.node.propose(new Uint8Array(0)), { name: 'ProposalDroppedError' })
  await c.stopAll()
})

t.test('a proposal waiting for commit is released by its AbortSignal', async t => {
  const c = new TestCluster()
  const ids = ['a', 'b', 'c']
  for (const id of ids) c.add(id, ids)
  for (const m of c.members.values()) await m.node.start()
  await until(() => c.leader() !== undefined, 'leader')
  const leader = c.leader()
  if (leader === undefined) throw new Error('no leader')
  for (const m of c.members.values()) if (m !== leader) c.cut.add(m.id)
  const ac = new AbortController()
  const p = leader.node.propose(enc.encode('stuck'), ac.signal)
  setTimeout(() => { ac.abort(new Error('timeout')) }, 50)
  await t.rejects(p, /timeout/)
  await c.stopAll()
})
