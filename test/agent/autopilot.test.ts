// Autopilot's decisions, one round at a time (the real agents exercise it in
// capsules.test.ts and raft.test.ts; this pins the order it chooses).
import t from 'tap'
import { Autopilot, CAUGHT_UP_ENTRIES, ROLE_PREF_LABEL, deadVoterRemovalHelps, type AutopilotMember, type AutopilotView } from '../../agent/raft/autopilot.js'

const alive = (id: string, role?: 'server' | 'client'): AutopilotMember => ({ id, state: 'alive', labels: role === undefined ? {} : { [ROLE_PREF_LABEL]: role } })

function view (over: Partial<AutopilotView>): AutopilotView {
  return { self: 'a0', members: [], voters: ['a0'], learners: [], match: {}, lastIndex: 100, wantVoters: 3, deadVoterGraceMs: 5000, now: 0, ...over }
}

t.test('learners are added in the order members were heard of', async t => {
  const p = new Autopilot()
  // ids sort the other way round from the join order
  const members = [alive('a0'), alive('zz-first'), alive('aa-second')]
  t.same(p.step(view({ members })), { kind: 'addLearner', id: 'zz-first' })
  t.same(p.step(view({ members, learners: ['zz-first'] })), { kind: 'addLearner', id: 'aa-second' })
})

t.test('promotion follows join order, not which learner has the highest match', async t => {
  const p = new Autopilot()
  const members = [alive('a0'), alive('zz-first'), alive('aa-second'), alive('mm-third')]
  const learners = ['aa-second', 'mm-third', 'zz-first'] // Raft keeps them sorted by id
  const match = { a0: 100, 'zz-first': 95, 'aa-second': 100, 'mm-third': 100 }
  t.same(p.step(view({ members, learners, match })), { kind: 'promote', id: 'zz-first' }, 'the first joiner, caught up within CAUGHT_UP_ENTRIES')
  const after = view({ members, voters: ['a0', 'zz-first'], learners: ['aa-second', 'mm-third'], match })
  t.same(p.step(after), { kind: 'promote', id: 'aa-second' })
  t.equal(p.step(view({ members, voters: ['a0', 'aa-second', 'zz-first'], learners: ['mm-third'], match })), undefined, 'the third joiner stays a client with 3 voters')
})

t.test('the first in line waits a grace period to catch up, then loses its place', async t => {
  const p = new Autopilot(10_000)
  const members = [alive('a0'), alive('slow'), alive('fast')]
  const learners = ['fast', 'slow']
  const match = { a0: 100, slow: 100 - CAUGHT_UP_ENTRIES - 50, fast: 100 }
  t.equal(p.step(view({ members, learners, match, now: 1000 })), undefined, 'waits for the first joiner')
  t.equal(p.step(view({ members, learners, match, now: 10_999 })), undefined, 'still within the grace period')
  t.same(p.step(view({ members, learners, match, now: 11_000 })), { kind: 'promote', id: 'fast' }, 'after the grace, the next caught-up learner')
  t.same(p.step(view({ members, learners, match: { ...match, slow: 90 }, now: 11_000 })), { kind: 'promote', id: 'slow' }, 'once caught up, the first joiner goes first again')
  const young = new Autopilot()
  t.equal(young.step(view({ members, learners, match: { a0: 3 }, lastIndex: 3 })), undefined, 'a learner that has acknowledged nothing yet is not caught up, even in a short log')
  t.same(young.step(view({ members, learners, match: { a0: 3, slow: 3 }, lastIndex: 3 })), { kind: 'promote', id: 'slow' })
})

t.test('role preferences: server first, client never', async t => {
  const p = new Autopilot()
  const members = [alive('a0'), alive('early', 'client'), alive('auto'), alive('late', 'server')]
  const learners = ['auto', 'early', 'late']
  const match = { a0: 100, early: 100, auto: 100, late: 100 }
  t.same(p.step(view({ members, learners, match })), { kind: 'promote', id: 'late' }, '--role server goes first')
  t.same(p.step(view({ members, voters: ['a0', 'late'], learners: ['auto', 'early'], match })), { kind: 'promote', id: 'auto' })
  t.equal(p.step(view({ members: members.filter(m => m.id !== 'auto'), voters: ['a0', 'late'], learners: ['early'], match })), undefined, '--role client is never promoted, even with voters short')
})

t.test('servers that left go at once; dead ones after the grace period; removal comes first', async t => {
  const p = new Autopilot()
  const members: AutopilotMember[] = [alive('a0'), { id: 'gone', state: 'left', labels: {} }, alive('new')]
  t.same(p.step(view({ members, voters: ['a0', 'gone'] })), { kind: 'remove', id: 'gone', state: 'left' })
  const dead: AutopilotMember[] = [alive('a0'), { id: 'd', state: 'dead', labels: {} }, alive('l')]
  const v = { members: dead, voters: ['a0', 'd'], learners: ['l'], match: { a0: 100, l: 100 } }
  t.equal(p.step(view({ ...v, voters: ['a0', 'd', 'x'], now: 0 })), undefined, 'a dead voter within its grace: nothing to do (voters not short)')
  t.same(p.step(view({ ...v, now: 4999 })), { kind: 'promote', id: 'l' }, 'voters short: promote meanwhile')
  t.same(p.step(view({ ...v, now: 5000 })), { kind: 'remove', id: 'd', state: 'dead' })
  const revived: AutopilotMember[] = [alive('a0'), alive('d'), alive('l')]
  p.step(view({ members: revived, voters: ['a0', 'd'], now: 6000 }))
  t.equal(p.step(view({ members: dead, voters: ['a0', 'd', 'l'], now: 7000 })), undefined, 'a member that came back starts its grace again')
})

t.test('never more voters than asked for, nor than 7', async t => {
  const p = new Autopilot()
  const ids = Array.from({ length: 9 }, (_, i) => `n${i}`)
  const members = ids.map(id => alive(id))
  const match = Object.fromEntries(ids.map(id => [id, 100]))
  t.equal(p.step(view({ members, voters: ids.slice(0, 7), learners: ids.slice(7), match, wantVoters: 9 })), undefined)
  t.same(p.step(view({ members, voters: ids.slice(0, 6), learners: ids.slice(6), match, wantVoters: 9 })), { kind: 'promote', id: 'n6' })
})

t.test('a dead voter stays while removing it would not help the quorum and nobody can take its place', async t => {
  const p = new Autopilot()
  const dead = (id: string): AutopilotMember => ({ id, state: 'dead', labels: {} })
  // 3 voters, one cut off (a partition, a slow restart): it must come back a voter, not a learner.
  const three = { members: [alive('a0'), alive('b'), dead('c')], voters: ['a0', 'b', 'c'] }
  t.equal(p.step(view({ ...three, now: 0 })), undefined)
  t.equal(p.step(view({ ...three, now: 60_000 })), undefined, 'long past the grace: still a voter')
  const withClient = { members: [...three.members, alive('x', 'client')], learners: ['x'], match: { x: 100 } }
  t.equal(p.step(view({ ...three, ...withClient, now: 60_000 })), undefined, 'a learner that asks to stay a client is no replacement')
  const withSpare = { members: [...three.members, alive('y')], learners: ['y'], match: { y: 100 } }
  t.same(p.step(view({ ...three, ...withSpare, now: 60_000 })), { kind: 'remove', id: 'c', state: 'dead' }, 'an alive learner can take its place')
  const newcomer = { members: [...three.members, alive('z')] }
  t.same(p.step(view({ ...three, ...newcomer, now: 60_000 })), { kind: 'addLearner', id: 'z' }, 'an alive non-member becomes a learner first')
  const fiveOneDead = { members: [alive('a0'), alive('b'), alive('c'), alive('d'), dead('e')], voters: ['a0', 'b', 'c', 'd', 'e'], wantVoters: 5 }
  t.equal(p.step(view({ ...fiveOneDead, now: 60_000 })), undefined, '5 voters, 1 dead: 3 acks needed either way')
  const fiveTwoDead = { members: [alive('a0'), alive('b'), alive('c'), dead('d'), dead('e')], voters: ['a0', 'b', 'c', 'd', 'e'], wantVoters: 5 }
  const q = new Autopilot()
  t.equal(q.step(view({ ...fiveTwoDead, now: 0 })), undefined, 'the grace starts when a member is first seen dead')
  t.same(q.step(view({ ...fiveTwoDead, now: 60_000 })), { kind: 'remove', id: 'd', state: 'dead' }, '5 voters, 2 dead: 3 voters need 2 acks, not 3')
  t.same(q.step(view({ ...fiveTwoDead, voters: ['a0', 'b', 'c', 'e'], now: 60_000 })), { kind: 'remove', id: 'e', state: 'dead' }, 'then 4 voters, 1 dead')
  const deadLearner = { members: [alive('a0'), alive('b'), alive('c'), dead('l')], voters: ['a0', 'b', 'c'], learners: ['l'] }
  p.step(view({ ...deadLearner, now: 0 }))
  t.same(p.step(view({ ...deadLearner, now: 60_000 })), { kind: 'remove', id: 'l', state: 'dead' }, 'a dead learner goes after its grace (no quorum depends on it)')
})

t.test('deadVoterRemovalHelps: the quorum of the live voters against today\'s', async t => {
  const v = (voters: number, wantVoters = voters): { voters: string[], wantVoters: number } => ({ voters: Array.from({ length: voters }, (_, i) => `n${i}`), wantVoters })
  t.equal(deadVoterRemovalHelps(v(3), 0, true), false, 'nobody dead')
  t.equal(deadVoterRemovalHelps(v(3), 1, false), false)
  t.equal(deadVoterRemovalHelps(v(3), 1, true), true)
  t.equal(deadVoterRemovalHelps(v(4), 1, false), true)
  t.equal(deadVoterRemovalHelps(v(5), 1, false), false)
  t.equal(deadVoterRemovalHelps(v(5), 2, false), true)
  t.equal(deadVoterRemovalHelps(v(4, 3), 1, false), true, 'more voters than wanted')
  t.equal(deadVoterRemovalHelps(v(2), 1, false), true)
})
