// RaftNode on a fake clock: elections, timeouts and check-quorum happen at
// the ticks the test gives, whatever the machine's load (no timers, no sleeps).
import t from 'tap'
import { REQUEST_TIMEOUT_ELECTIONS, RaftTimeoutError } from '../../consensus/index.js'
import { ManualClock, TestCluster, settle } from './helpers.js'

const ELECTION_TICKS = 10 // TestCluster's

/** Three voters on one ManualClock, started (nothing has ticked yet). */
async function threeOnClock (): Promise<{ clock: ManualClock, c: TestCluster }> {
  const clock = new ManualClock()
  const c = new TestCluster(clock)
  const ids = ['a', 'b', 'c']
  for (const id of ids) c.add(id, ids)
  for (const m of c.members.values()) await m.node.start()
  return { clock, c }
}

async function electedOn (clock: ManualClock, c: TestCluster, maxTicks: number): Promise<number> {
  for (let i = 0; i < maxTicks; i++) {
    if (c.leader() !== undefined) return clock.now
    await clock.tick()
  }
  throw new Error(`no leader within ${maxTicks} ticks`)
}

t.test('no election before the election timeout; one within two of them', async t => {
  const { clock, c } = await threeOnClock()
  t.equal(clock.running, 3, 'every node ticks on the test\'s clock')
  await clock.tick(ELECTION_TICKS - 1)
  t.equal(c.leader(), undefined, 'nobody campaigns before electionTicks ticks')
  const at = await electedOn(clock, c, 4 * ELECTION_TICKS)
  t.ok(at <= 2 * ELECTION_TICKS + 1, `a leader at tick ${at}`)
  await c.stopAll()
  t.equal(clock.running, 0, 'stop() stops the ticker')
})

t.test('a transfer to a node that never answers fails after REQUEST_TIMEOUT_ELECTIONS election timeouts of ticks', async t => {
  const { clock, c } = await threeOnClock()
  await electedOn(clock, c, 4 * ELECTION_TICKS)
  const leader = c.leader()!
  const [cut, other] = [...c.members.values()].filter(m => m !== leader)
  // Heartbeats settle every follower on the leader before the cut.
  await clock.tick(2)
  t.equal(other!.node.status().leader, leader.id)
  c.cut.add(cut!.id)
  let failed: unknown
  const p = leader.node.transferLeadership(cut!.id).catch((err: unknown) => { failed = err })
  await settle()
  const deadline = REQUEST_TIMEOUT_ELECTIONS * ELECTION_TICKS
  await clock.tick(deadline - 1)
  t.equal(failed, undefined, `still waiting after ${deadline - 1} ticks`)
  t.equal(leader.node.status().role, 'leader', 'the leader keeps its quorum (the other follower answers)')
  await clock.tick(1)
  await p
  t.ok(failed instanceof RaftTimeoutError, `fails at tick ${deadline} with RaftTimeoutError`)
  await c.stopAll()
})

t.test('check-quorum: a leader cut off from every follower steps down within two election timeouts of ticks', async t => {
  const { clock, c } = await threeOnClock()
  await electedOn(clock, c, 4 * ELECTION_TICKS)
  const leader = c.leader()!
  c.cut.add(leader.id)
  // Its followers' acks from before the cut count for the check in progress: the next one fails.
  await clock.tick(2 * ELECTION_TICKS)
  t.not(leader.node.status().role, 'leader', 'the isolated leader stepped down')
  // The other two elect one of them (a split vote may cost a round more).
  const others = [...c.members.values()].filter(m => m !== leader)
  for (let i = 0; i < 10 * ELECTION_TICKS && !others.some(m => m.node.status().role === 'leader'); i++) await clock.tick()
  t.ok(others.some(m => m.node.status().role === 'leader'), 'the other two elect a leader')
  await c.stopAll()
})
