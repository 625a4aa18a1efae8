import t from 'tap'
import { RaftCore, MemoryStorage, NotLeaderError, ConfChangeError, RaftConfigError, type Message } from '../../consensus/index.js'
import { RaftLog } from '../../consensus/core/log.js'
import { Inflights, Progress } from '../../consensus/core/progress.js'
import { TermIndex } from '../../consensus/storage/term-index.js'
import { Prng } from '../../consensus/sim/prng.js'
import { core as bootCore, drain } from '../helpers/raft-core.js'

const enc = new TextEncoder()

function core (id: string, voters: string[], opts: Partial<ConstructorParameters<typeof RaftCore>[0]> = {}): { c: RaftCore, s: MemoryStorage } {
  return bootCore(id, voters, { random: () => 0, ...opts })
}

t.test('options are validated with errors naming the option', async t => {
  t.throws(() => new RaftCore({ id: 'a', storage: new MemoryStorage(), random: Math.random, electionTicks: 2, heartbeatTicks: 2 }), RaftConfigError)
  t.throws(() => new RaftCore({ id: 'a', storage: new MemoryStorage(), random: Math.random, maxInflightMsgs: 0 }), /maxInflightMsgs/)
})

t.test('a single voter becomes leader after its election timeout and commits alone', async t => {
  const { c, s } = core('a', ['a'])
  for (let i = 0; i < 10; i++) c.tick()
  drain(c, s)
  t.equal(c.role, 'leader')
  const { index } = c.propose(enc.encode('x'))
  drain(c, s)
  t.equal(c.log.committed, index)
  t.equal(c.log.applied, index)
})

t.test('followers refuse proposals with the leader hint; conf changes are validated', async t => {
  const { c } = core('a', ['a', 'b', 'c'])
  t.throws(() => c.propose(enc.encode('x')), NotLeaderError)
  const { c: solo, s } = core('a', ['a'])
  solo.campaign()
  drain(solo, s)
  t.throws(() => solo.proposeConfChange({ type: 'promote', node: 'zz' }), ConfChangeError)
  t.throws(() => solo.proposeConfChange({ type: 'remove', node: 'a' }), /last voter/)
  solo.proposeConfChange({ type: 'addLearner', node: 'b' })
  t.throws(() => solo.proposeConfChange({ type: 'addLearner', node: 'c' }), /still pending/)
  drain(solo, s)
  t.same(solo.status().config, { voters: ['a'], learners: ['b'] })
})

t.test('pre-vote does not bump the term of an isolated node', async t => {
  const { c, s } = core('a', ['a', 'b', 'c'])
  for (let i = 0; i < 100; i++) c.tick()
  const msgs = drain(c, s)
  t.equal(c.term, 1)
  t.equal(c.role, 'preCandidate')
  t.ok(msgs.every(m => m.type === 'preVote'))
})

t.test('without pre-vote an isolated node does bump its term', async t => {
  const { c, s } = core('a', ['a', 'b', 'c'], { preVote: false })
  for (let i = 0; i < 10; i++) c.tick()
  drain(c, s)
  t.equal(c.term, 2)
  t.equal(c.role, 'candidate')
})

t.test('check-quorum: a leader that hears nothing steps down after two election timeouts', async t => {
  const { c, s } = core('a', ['a', 'b', 'c'], { preVote: false })
  c.campaign()
  drain(c, s)
  for (const from of ['b', 'c']) c.step({ type: 'voteResp', from, to: 'a', term: 2, reject: false })
  t.equal(c.role, 'leader')
  for (let i = 0; i < 20; i++) c.tick()
  t.equal(c.role, 'follower')
})

t.test('learners are heartbeaten every learnerHeartbeatTicks; voters every heartbeatTick; a ReadIndex round asks voters only', async t => {
  const s = new MemoryStorage()
  s.saveSync({ hardState: { term: 1, vote: '', commit: 3 }, entries: [{ type: 'conf', term: 1, index: 1, change: { type: 'addVoter', node: 'a' } }, { type: 'conf', term: 1, index: 2, change: { type: 'addVoter', node: 'b' } }, { type: 'conf', term: 1, index: 3, change: { type: 'addLearner', node: 'c' } }] })
  const c = new RaftCore({ id: 'a', storage: s, random: () => 0, preVote: false, heartbeatTicks: 1, electionTicks: 10, learnerHeartbeatTicks: 4 })
  drain(c, s)
  c.campaign()
  drain(c, s)
  c.step({ type: 'voteResp', from: 'b', to: 'a', term: 2, reject: false })
  t.equal(c.role, 'leader')
  drain(c, s)
  // Both catch up to the leader's empty entry, so only heartbeats remain.
  for (const from of ['b', 'c']) c.step({ type: 'appResp', from, to: 'a', term: 2, index: 4, reject: false, hintIndex: 0, hintTerm: 0 })
  drain(c, s)
  const beats: string[] = []
  for (let i = 0; i < 8; i++) {
    c.tick()
    for (const m of drain(c, s)) if (m.type === 'heartbeat') beats.push(`${i}:${m.to}`)
  }
  t.same(beats, ['0:b', '1:b', '2:b', '3:b', '3:c', '4:b', '5:b', '6:b', '7:b', '7:c'])
  c.readIndex('r1')
  const round = drain(c, s).filter(m => m.type === 'heartbeat')
  t.same(round.map(m => [m.to, m.context]), [['b', 'r1']], 'the ReadIndex heartbeat goes to the voter only')
  c.step({ type: 'heartbeatResp', from: 'b', to: 'a', term: 2, context: 'r1' })
  t.same(c.readStates.map(r => r.context), ['r1'], 'the voter ack completes the read')
  // The default keeps learners on the voters' beat.
  const d = new RaftCore({ id: 'a', storage: s, random: () => 0 })
  t.equal(d.opts.learnerHeartbeatTicks, d.opts.heartbeatTicks)
  t.throws(() => new RaftCore({ id: 'a', storage: new MemoryStorage(), random: Math.random, learnerHeartbeatTicks: 0 }), /learnerHeartbeatTicks/)
})

t.test('RaftLog: findConflictByTerm and maybeAppend truncation', async t => {
  const s = new MemoryStorage()
  s.saveSync({ entries: [1, 1, 2, 2, 2, 4].map((term, i) => ({ type: 'normal', term, index: i + 1, data: new Uint8Array() })) })
  const log = new RaftLog(s)
  t.same(log.findConflictByTerm(6, 3), [5, 2])
  t.same(log.findConflictByTerm(6, 1), [2, 1])
  t.same(log.findConflictByTerm(10, 9), [6, 4])
  t.equal(log.maybeAppend(3, 2, 3, [{ type: 'normal', term: 3, index: 4, data: new Uint8Array() }]), 4)
  t.equal(log.lastIndex(), 4)
  t.equal(log.term(4), 3)
  t.equal(log.committed, 3)
  t.equal(log.maybeAppend(3, 9, 3, []), undefined)
})

t.test('Inflights and Progress bound the pipeline', async t => {
  const inf = new Inflights(3, 100)
  inf.add(1, 10); inf.add(2, 10)
  t.notOk(inf.full())
  inf.add(3, 10)
  t.ok(inf.full())
  inf.freeLE(2)
  t.equal(inf.count(), 1)
  const bytes = new Inflights(10, 25)
  bytes.add(1, 20); bytes.add(2, 20)
  t.ok(bytes.full(), 'byte bound')
  const p = new Progress(10, false, 2, 0)
  t.equal(p.state, 'probe')
  p.sentEntries(12, 2, 20)
  t.ok(p.isPaused(), 'probe sends one append at a time')
  t.ok(p.maybeUpdate(12))
  p.becomeReplicate()
  p.sentEntries(14, 2, 20)
  p.sentEntries(16, 2, 20)
  t.ok(p.isPaused(), 'pipeline full')
  t.equal(p.next, 17)
  t.ok(p.maybeDecrTo(16, 13))
  t.equal(p.next, 13)
})

t.test('TermIndex answers terms from runs', async t => {
  const ti = new TermIndex()
  for (let i = 1; i <= 10; i++) ti.append(i, i <= 3 ? 1 : i <= 7 ? 2 : 5)
  t.equal(ti.termAt(1), 1)
  t.equal(ti.termAt(4), 2)
  t.equal(ti.termAt(10), 5)
  ti.truncateFrom(6)
  ti.append(6, 6)
  t.equal(ti.termAt(5), 2)
  t.equal(ti.termAt(6), 6)
  ti.compactTo(4)
  t.equal(ti.termAt(5), 2)
})

t.test('Prng is deterministic per seed', async t => {
  const a = new Prng(7)
  const b = new Prng(7)
  const xs = Array.from({ length: 5 }, () => a.next())
  t.same(xs, Array.from({ length: 5 }, () => b.next()))
  t.ok(xs.every(x => x >= 0 && x < 1))
})

t.test('leader messages from a peer that is not a voter are dropped; a joiner and a node that lost its leader still take them', async t => {
  // 'c' is a learner, 'x' no member at all: neither may raise b's term, write its log or make it campaign.
  const s = new MemoryStorage()
  s.saveSync({ hardState: { term: 1, vote: '', commit: 3 }, entries: [{ type: 'conf', term: 1, index: 1, change: { type: 'addVoter', node: 'a' } }, { type: 'conf', term: 1, index: 2, change: { type: 'addVoter', node: 'b' } }, { type: 'conf', term: 1, index: 3, change: { type: 'addLearner', node: 'c' } }] })
  const b = new RaftCore({ id: 'b', storage: s, random: () => 0, electionTicks: 10, strangerTicks: 50 })
  drain(b, s)
  const bogus = (from: string, term: number): Message[] => [
    { type: 'app', from, to: 'b', term, index: 3, logTerm: 1, commit: 4, entries: [{ type: 'normal', term, index: 4, data: enc.encode('evil') }] },
    { type: 'heartbeat', from, to: 'b', term, commit: 3 },
    { type: 'snap', from, to: 'b', term, meta: { index: 9, term, confState: { voters: [from], learners: [] } }, offset: 0, total: 1, chunk: new Uint8Array([1]) },
    { type: 'vote', from, to: 'b', term, index: 9, logTerm: term, transfer: true },
    { type: 'timeoutNow', from, to: 'b', term }
  ]
  for (const from of ['c', 'x']) for (const m of bogus(from, 7)) b.step(m)
  drain(b, s)
  t.equal(b.term, 1, 'the term did not move')
  t.equal(b.log.lastIndex(), 3, 'nothing was appended')
  t.equal(b.role, 'follower', 'no campaign')
  t.equal(b.lead, null)
  // The real leader keeps b out of the stranger grace.
  for (let i = 0; i < 60; i++) {
    if (i % 5 === 0) b.step({ type: 'heartbeat', from: 'a', to: 'b', term: 1, commit: 3 })
    b.tick()
  }
  drain(b, s)
  b.step(bogus('x', 8)[1]!)
  t.equal(b.term, 1, 'while a voter leads, a stranger is still ignored')
  // Silence from the configuration's voters for strangerTicks: its configuration may lag, so it listens.
  for (let i = 0; i < 60; i++) b.tick()
  drain(b, s)
  b.step({ type: 'heartbeat', from: 'd', to: 'b', term: 9, commit: 3 })
  t.equal(b.term, 9, 'after strangerTicks without a leader it follows a voter it does not know yet')
  t.equal(b.lead, 'd')

  // A joiner has no configuration yet: its first leader is necessarily unknown to it.
  const j = new MemoryStorage()
  const fresh = new RaftCore({ id: 'j', storage: j, random: () => 0 })
  fresh.step({ type: 'heartbeat', from: 'a', to: 'j', term: 3, commit: 0 })
  t.equal(fresh.term, 3, 'a node without voters takes its first leader')
  t.equal(new RaftCore({ id: 'q', storage: new MemoryStorage(), random: () => 0, electionTicks: 7 }).opts.strangerTicks, 35, 'strangerTicks defaults to five election timeouts')
})
