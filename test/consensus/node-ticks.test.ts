// RaftNode's wallClockTicks (issue #25): a tick timer that fires late (the
// event loop was busy) still counts the time that passed, so a survivor of a
// dead leader campaigns after an election timeout of real time, not of
// timer callbacks. Observed through the messages it sends, not timed.
import t from 'tap'
import { RaftNode, MemoryStorage, type Message } from '../../consensus/index.js'

function busy (ms: number): void {
  const end = performance.now() + ms
  while (performance.now() < end) { /* the event loop is blocked, as on a loaded machine */ }
}

async function preVotesAfterStall (wallClockTicks: boolean): Promise<number> {
  const sent: Message[] = []
  const node = new RaftNode({
    id: 'a',
    storage: new MemoryStorage(),
    bootstrap: ['a', 'b', 'c'], // b and c never answer
    tickMs: 20,
    electionTicks: 5,
    electionJitterTicks: 1,
    wallClockTicks,
    send: (_to, m) => { sent.push(m) },
    apply: () => {},
    snapshot: async () => new Uint8Array(0),
    restore: () => {},
  })
  await node.start()
  sent.length = 0
  busy(250) // a whole election timeout (100 ms) and more, with no timer callback
  // The overdue tick timer runs before this later one.
  await new Promise(resolve => setTimeout(resolve, 1))
  const n = sent.filter(m => m.type === 'preVote').length
  await node.stop()
  return n
}

t.test('a late tick timer counts the ticks it owed when wallClockTicks is on', async t => {
  t.equal(await preVotesAfterStall(true), 2, 'pre-votes to b and c on the first callback after the stall')
  t.equal(await preVotesAfterStall(false), 0, 'off (the default): one tick per callback, no campaign yet')
})

t.test('a leader counts timer callbacks, not owed ticks: a stall does not fail its check-quorum', async t => {
  const sent: Message[] = []
  const node = new RaftNode({
    id: 'a',
    storage: new MemoryStorage(),
    bootstrap: ['a', 'b', 'c'],
    tickMs: 20,
    electionTicks: 5,
    electionJitterTicks: 1,
    wallClockTicks: true,
    send: (_to, m) => { sent.push(m) },
    apply: () => {},
    snapshot: async () => new Uint8Array(0),
    restore: () => {},
  })
  t.teardown(() => node.stop())
  await node.start()
  // b grants the pre-vote and the vote: a leads with b and c silent from then on.
  const until = async (type: Message['type']): Promise<Message> => {
    for (;;) {
      const m = sent.find(x => x.type === type && x.to === 'b')
      if (m !== undefined) return m
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  }
  const pv = await until('preVote')
  node.receive({ type: 'preVoteResp', from: 'b', to: 'a', term: pv.term, reject: false })
  const v = await until('vote')
  node.receive({ type: 'voteResp', from: 'b', to: 'a', term: v.term, reject: false })
  await new Promise(resolve => setTimeout(resolve, 1))
  t.equal(node.status().role, 'leader')
  // Twice more than an election timeout (100 ms) with no timer callback: a
  // check-quorum round passes on the votes, the next one needs answers.
  for (let i = 0; i < 2; i++) {
    busy(250)
    await new Promise(resolve => setTimeout(resolve, 1))
  }
  t.equal(node.status().role, 'leader', 'one callback is one tick for a leader: check-quorum has not run out')
})
