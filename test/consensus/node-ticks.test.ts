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
