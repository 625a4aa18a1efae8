// The core's failover options (issue #25): electionJitterTicks narrows the
// spread of election timeouts, campaignRetryTicks makes a pre-candidate
// whose pre-vote did not win ask again soon instead of after a whole timeout.
import t from 'tap'
import { RaftCore, MemoryStorage, RaftConfigError } from '../../consensus/index.js'
import { core as bootCore, drain } from '../helpers/raft-core.js'

function core (id: string, voters: string[], opts: Partial<ConstructorParameters<typeof RaftCore>[0]> = {}): { c: RaftCore, s: MemoryStorage } {
  return bootCore(id, voters, { random: () => 0.999, ...opts })
}

/** Ticks until `c` sends pre-votes; -1 if it has not within `max`. */
function ticksToPreVote (c: RaftCore, s: MemoryStorage, max: number): number {
  for (let i = 1; i <= max; i++) {
    c.tick()
    if (drain(c, s).some(m => m.type === 'preVote')) return i
  }
  return -1
}

t.test('electionJitterTicks bounds the randomized election timeout', async t => {
  // random() is 0.999: the longest timeout the spread allows.
  const wide = core('a', ['a', 'b', 'c'], { electionTicks: 10 })
  t.equal(ticksToPreVote(wide.c, wide.s, 40), 19, 'default: [10, 20)')
  const narrow = core('a', ['a', 'b', 'c'], { electionTicks: 10, electionJitterTicks: 3 })
  t.equal(ticksToPreVote(narrow.c, narrow.s, 40), 12, 'jitter 3: [10, 13)')
  t.throws(() => new RaftCore({ id: 'a', storage: new MemoryStorage(), random: Math.random, electionJitterTicks: 0 }), /electionJitterTicks/)
})

t.test('campaignRetryTicks: an unanswered pre-vote is asked again within [n, 2n) ticks, without a new term', async t => {
  const { c, s } = core('a', ['a', 'b', 'c'], { electionTicks: 10, electionJitterTicks: 1, campaignRetryTicks: 2 })
  t.equal(ticksToPreVote(c, s, 40), 10, 'first pre-vote after the election timeout')
  t.equal(c.role, 'preCandidate')
  const term = c.term
  // Nobody answers (their lease on the dead leader still runs): asked again after 2-3 ticks, not 10.
  t.equal(ticksToPreVote(c, s, 40), 3, 'asked again after 2 + floor(0.999 × 2) ticks')
  t.equal(c.term, term, 'a pre-vote changes no term')

  const off = core('a', ['a', 'b', 'c'], { electionTicks: 10, electionJitterTicks: 1 })
  t.equal(ticksToPreVote(off.c, off.s, 40), 10)
  t.equal(ticksToPreVote(off.c, off.s, 40), 10, 'off (the default): a whole election timeout again')
  t.throws(() => new RaftCore({ id: 'a', storage: new MemoryStorage(), random: Math.random, campaignRetryTicks: -1 }), RaftConfigError)
})

t.test('campaignRetryTicks leaves a real candidacy its whole election timeout', async t => {
  const { c, s } = core('a', ['a', 'b', 'c'], { electionTicks: 10, electionJitterTicks: 1, campaignRetryTicks: 2, preVote: false })
  for (let i = 0; i < 10; i++) c.tick()
  drain(c, s)
  t.equal(c.role, 'candidate')
  const term = c.term
  for (let i = 0; i < 9; i++) c.tick()
  t.equal(c.term, term, 'no new candidacy before the election timeout')
  c.tick()
  t.equal(c.term, term + 1, 'then one')
})

t.test('campaignRetryTicks: a split vote (a voter refused, the rest silent) is retried within [n, 2n) ticks through pre-vote', async t => {
  const { c, s } = core('a', ['a', 'b', 'c'], { electionTicks: 10, electionJitterTicks: 1, campaignRetryTicks: 2 })
  t.equal(ticksToPreVote(c, s, 40), 10)
  c.step({ type: 'preVoteResp', from: 'b', to: 'a', term: c.term + 1, reject: false })
  const votes = drain(c, s).filter(m => m.type === 'vote')
  t.equal(c.role, 'candidate', 'pre-vote won')
  t.equal(votes.length, 2)
  const term = c.term
  // b stood for the same term and voted for itself; c (the dead leader) never answers.
  c.step({ type: 'voteResp', from: 'b', to: 'a', term, reject: true })
  drain(c, s)
  t.equal(c.role, 'candidate', 'one refusal of three voters does not lose the election')
  t.equal(ticksToPreVote(c, s, 40), 3, 'asked again after 2 + floor(0.999 × 2) ticks, not a whole timeout')
  t.equal(c.role, 'preCandidate')
  t.equal(c.term, term, 'the retry raises no term until its pre-vote wins')
  c.step({ type: 'preVoteResp', from: 'b', to: 'a', term: term + 1, reject: false })
  drain(c, s)
  t.equal(c.role, 'candidate')
  t.equal(c.term, term + 1)
})

t.test('campaignRetryTicks: a candidate nobody has refused keeps its whole election timeout', async t => {
  const { c, s } = core('a', ['a', 'b', 'c'], { electionTicks: 10, electionJitterTicks: 1, campaignRetryTicks: 2 })
  t.equal(ticksToPreVote(c, s, 40), 10)
  c.step({ type: 'preVoteResp', from: 'b', to: 'a', term: c.term + 1, reject: false })
  drain(c, s)
  t.equal(c.role, 'candidate')
  t.equal(ticksToPreVote(c, s, 40), 10, 'votes may just be slow: no retry before the timeout')
})
