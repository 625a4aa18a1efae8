// RaftNode with a ticker that reports owed ticks (issue #25): a follower
// counts the time that passed when its timer fired late, so a survivor of a
// dead leader campaigns after an election timeout of real time; a leader
// counts one tick per callback, so a stall does not fail its check-quorum.
// Driven by the test's own ticker, observed through the messages sent.
import t from 'tap'
import { MemoryStorage, RaftNode, wallClockTicker, type Message } from '../../consensus/index.js'
import { settle } from './helpers.js'

const ELECTION_TICKS = 5

/** Node `a` of {a, b, c} (b and c answer only what the test feeds it) and its tick function. */
async function nodeA (): Promise<{ node: RaftNode, sent: Message[], tick: (owed?: number) => Promise<void> }> {
  const sent: Message[] = []
  let fire: ((owed?: number) => void) | undefined
  const node = new RaftNode({
    id: 'a',
    storage: new MemoryStorage(),
    bootstrap: ['a', 'b', 'c'],
    electionTicks: ELECTION_TICKS,
    electionJitterTicks: 1,
    ticker: (tick) => { fire = tick; return () => { fire = undefined } },
    send: (_to, m) => { sent.push(m) },
    apply: () => {},
    snapshot: async () => new Uint8Array(0),
    restore: () => {}
  })
  await node.start()
  return { node, sent, tick: async (owed) => { fire?.(owed); await settle() } }
}

t.test('a follower counts the ticks a late callback owed, and campaigns at the next callback', async t => {
  const { node, sent, tick } = await nodeA()
  t.teardown(() => node.stop())
  await tick(1)
  await tick(10 * ELECTION_TICKS)
  t.equal(sent.filter(m => m.type === 'preVote').length, 0, 'the late callback itself does not campaign')
  await tick(1)
  t.equal(sent.filter(m => m.type === 'preVote').length, 2, 'the next one does: pre-votes to b and c, one round')
  t.equal(node.status().role, 'preCandidate')
})

t.test('a follower woken from a stall grants a pending pre-vote instead of campaigning against it', async t => {
  const { node, sent, tick } = await nodeA()
  t.teardown(() => node.stop())
  // b was elected leader of term 1: a follows it.
  node.receive({ type: 'heartbeat', from: 'b', to: 'a', term: 1, commit: 0 })
  await settle()
  t.equal(node.status().leader, 'b')
  // b dies; a stalls for longer than an election timeout, then reads c's pre-vote that waited meanwhile.
  await tick(10 * ELECTION_TICKS)
  node.receive({ type: 'preVote', from: 'c', to: 'a', term: node.status().term + 1, index: 1000, logTerm: 1000, transfer: false })
  await settle()
  const resp = sent.find(m => m.type === 'preVoteResp' && m.to === 'c')
  t.ok(resp !== undefined && resp.type === 'preVoteResp' && !resp.reject, 'granted: the stall took a out of the dead leader\'s lease')
  t.equal(sent.filter(m => m.type === 'preVote').length, 0, 'and a did not campaign against c')
})

t.test('a follower whose every callback is late still campaigns', async t => {
  const { node, sent, tick } = await nodeA()
  t.teardown(() => node.stop())
  for (let i = 0; i < 2 * ELECTION_TICKS && sent.every(m => m.type !== 'preVote'); i++) await tick(2)
  t.equal(sent.filter(m => m.type === 'preVote').length, 2)
})

t.test('a leader counts one tick per callback: a stall does not step it down', async t => {
  const { node, sent, tick } = await nodeA()
  t.teardown(() => node.stop())
  await tick(ELECTION_TICKS + 1)
  await tick(1)
  const pv = sent.find(m => m.type === 'preVote' && m.to === 'b')
  if (pv === undefined) throw new Error('no pre-vote')
  node.receive({ type: 'preVoteResp', from: 'b', to: 'a', term: pv.term, reject: false })
  await settle()
  const v = sent.find(m => m.type === 'vote' && m.to === 'b')
  if (v === undefined) throw new Error('no vote')
  node.receive({ type: 'voteResp', from: 'b', to: 'a', term: v.term, reject: false })
  await settle()
  t.equal(node.status().role, 'leader')
  // Far more than an election timeout owed at once, with b and c silent: check-quorum would step it down if counted.
  await tick(10 * ELECTION_TICKS)
  t.equal(node.status().role, 'leader', 'still leading after one late callback')
})

t.test('wallClockTicker passes the periods that passed to a late callback', async t => {
  const got = await new Promise<number>(resolve => {
    const stop = wallClockTicker((owed) => { stop(); resolve(owed ?? 1) }, 10)
    const end = performance.now() + 100
    while (performance.now() < end) { /* the event loop is blocked, as on a loaded machine */ }
  })
  t.ok(got >= 10, `owed ${got} ticks after a 100 ms stall of a 10 ms ticker`)
})
