// deferCommitBroadcast (consensus/core/leader.ts): a new commit index rides
// on the next append or goes out at the next tick, instead of an empty
// append sent at once; a committed configuration change is told at once to
// every follower, by heartbeat to one the leader may not send appends to
// (simulator seed 6876). Messages are counted on a SimCluster, no clock.
import t from 'tap'
import { SimCluster } from '../../consensus/sim/cluster.js'
import type { Message } from '../../consensus/index.js'

const enc = new TextEncoder()

/** Three voters, n1 elected; `sent` records every message handed out. */
function cluster (deferCommitBroadcast: boolean, maxInflightMsgs = 256): { c: SimCluster, sent: Message[], run: () => void } {
  const c = new SimCluster(() => 0, { electionTicks: 10, heartbeatTicks: 5, deferCommitBroadcast, preVote: false, maxInflightMsgs })
  for (const id of ['n1', 'n2', 'n3']) c.addNode(id, ['n1', 'n2', 'n3'])
  const sent: Message[] = []
  /** Readies and deliveries until nothing moves (no ticks). */
  const run = (): void => {
    for (let moved = true; moved;) {
      moved = false
      for (const n of c.live()) while (c.processReady(n.id, false, m => { sent.push(m); c.inFlight.push({ msg: m, at: 0 }) }) !== null) moved = true
      const due = c.inFlight
      c.inFlight = []
      for (const f of due) { c.deliver(f.msg); moved = true }
    }
  }
  run() // applies the bootstrap configuration
  for (let i = 0; i < 12; i++) c.tick('n1')
  run()
  return { c, sent, run }
}

const emptyAppends = (ms: Message[]): number => ms.filter(m => m.type === 'app' && m.from === 'n1' && m.entries.length === 0).length

t.test('sequential writes: the commit rides on the next append, the last one goes out at the next tick', async t => {
  for (const defer of [false, true]) {
    const { c, sent, run } = cluster(defer)
    const leader = c.node('n1').core!
    t.equal(leader.role, 'leader')
    sent.length = 0
    for (let i = 0; i < 5; i++) {
      leader.propose(enc.encode(`w${i}`))
      run()
      t.equal(leader.log.applied, leader.log.lastIndex(), `write ${i} applied on the leader`)
    }
    // Without deferring, each commit is announced by an empty append to each follower.
    t.equal(emptyAppends(sent), defer ? 0 : 10, `defer=${String(defer)}: empty appends`)
    t.equal(sent.filter(m => m.from === 'n1').length, defer ? 10 : 20, `defer=${String(defer)}: messages from the leader`)
    if (!defer) continue
    // The followers know all but the last commit; the next tick tells them.
    const last = leader.log.committed
    t.ok(c.node('n2').core!.log.committed < last, 'a follower does not know the last commit yet')
    c.tick('n1')
    run()
    for (const id of ['n2', 'n3']) t.equal(c.node(id).core!.log.committed, last, `${id} learnt the last commit at the tick`)
  }
})

t.test('a committed configuration change is told at once, by heartbeat where appends are paused', async t => {
  // One append in flight per follower: n3's, lost, pauses it, so an append-only announcement skips it.
  const { c, sent, run } = cluster(true, 1)
  const leader = c.node('n1').core!
  const { index } = leader.proposeConfChange({ type: 'addLearner', node: 'n4' })
  c.addNode('n4')
  // Everything to n3 is lost until the change commits (with n1 and n2).
  for (let round = 0; round < 10 && leader.log.committed < index; round++) {
    for (const n of c.live()) while (c.processReady(n.id, false, m => { sent.push(m); if (m.to !== 'n3') c.inFlight.push({ msg: m, at: 0 }) }) !== null) { /* drain */ }
    const due = c.inFlight
    c.inFlight = []
    for (const f of due) c.deliver(f.msg)
  }
  t.ok(leader.log.committed >= index, 'the change committed with n1 and n2')
  sent.length = 0
  // The Ready that commits it (already produced) or the next one: the announcement goes out without a tick.
  run()
  const toN3 = sent.filter(m => m.from === 'n1' && m.to === 'n3')
  t.ok(toN3.some(m => m.type === 'heartbeat'), `the paused n3 was sent a heartbeat without a tick (${toN3.map(m => m.type).join(',')})`)
})
