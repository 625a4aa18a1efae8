import t from 'tap'
import type { TracePoint } from '../../consensus/index.js'
import { TestCluster, until } from './helpers.js'

const enc = new TextEncoder()

/** The marks from the Ready that carried `index` on, up to and including `last`. */
function fromReady (marks: Array<[TracePoint, number]>, index: number): string[] {
  const at = marks.findIndex(([p, i]) => p === 'ready' && i === index)
  return at < 0 ? [] : marks.slice(at).map(([p, i]) => `${p} ${i}`)
}

t.test('the Ready loop marks its steps in etcd\'s order: a follower acknowledges after its write, a leader sends while it writes', async t => {
  const c = new TestCluster()
  const ids = ['a', 'b', 'c']
  const marks = new Map<string, Array<[TracePoint, number]>>()
  for (const id of ids) {
    const m: Array<[TracePoint, number]> = []
    marks.set(id, m)
    c.add(id, ids, undefined, 10, (point, index) => { m.push([point, index]) })
  }
  for (const m of c.members.values()) await m.node.start()
  await until(() => c.leader() !== undefined && [...c.members.values()].every(m => m.node.status().leader === c.leader()?.id), 'agreed leader')
  const leader = c.leader()!
  // Everyone has applied the leader's empty entry, so the next append carries only the proposal.
  await until(() => [...c.members.values()].every(m => m.node.status().applied === leader.node.status().lastIndex), 'caught up')
  const { index } = await leader.node.propose(enc.encode('x'))
  await until(() => [...c.members.values()].every(m => m.applied.includes('x')), 'applied everywhere')

  const lead = fromReady(marks.get(leader.id)!, index)
  t.same(lead.slice(0, 4), [`ready ${index}`, `sent ${index}`, `persist ${index}`, `persisted ${index}`], 'the leader\'s appends leave before its own write')
  t.ok(lead.some(m => m.startsWith('applied ') && Number(m.split(' ')[1]) >= index), 'the leader marks the entry applied')
  for (const f of [...c.members.values()].filter(m => m !== leader)) {
    const fm = fromReady(marks.get(f.id)!, index)
    t.same(fm.slice(0, 4), [`ready ${index}`, `persist ${index}`, `persisted ${index}`, `sent ${index}`], `${f.id} acknowledges only after its write`)
  }
  await c.stopAll()
})
