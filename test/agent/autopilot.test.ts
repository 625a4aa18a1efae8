// Autopilot's decisions, one round at a time (the real agents exercise it in
// capsules.test.ts and raft.test.ts; this pins the order it chooses).
import t from 'tap'
import { Autopilot, CAUGHT_UP_ENTRIES, ROLE_PREF_LABEL, type AutopilotMember, type AutopilotView } from '../../agent/raft/autopilot.js'

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
