// Issue #25: many concurrent proposals end up in few synced batches. Counted
// through the storage layer (RaftStorage's onSynced, once per synced level
// batch), never timed: proposals made in one synchronous burst must share the
// batches of the Ready loop, on the leader and on every follower.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RaftStorage } from '../../consensus/index.js'
import { TestCluster, until } from './helpers.js'

const enc = new TextEncoder()

t.test('256 concurrent proposals: every one acknowledged, in a handful of synced batches per node', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-batching-'))
  const c = new TestCluster()
  const ids = ['a', 'b', 'c']
  const synced = new Map<string, Array<{ entries: number }>>()
  const stores: RaftStorage[] = []
  t.teardown(async () => {
    await c.stopAll()
    for (const s of stores) await s.close()
    await rm(dir, { recursive: true, force: true })
  })
  for (const id of ids) {
    const batches: Array<{ entries: number }> = []
    synced.set(id, batches)
    const s = await RaftStorage.open(join(dir, id), { onSynced: (b) => { batches.push({ entries: b.entries }) } })
    stores.push(s)
    // 50 ms ticks: an election timeout of 0.5-1 s, which a loaded machine does not trip by accident.
    c.add(id, ids, s, 50)
  }
  for (const m of c.members.values()) await m.node.start()
  await until(() => c.leader() !== undefined && [...c.members.values()].every(m => m.node.status().leader === c.leader()?.id), 'agreed leader')
  const leader = c.leader()!
  await leader.node.propose(enc.encode('warm-up'))
  await until(() => [...c.members.values()].every(m => m.applied.length === 1), 'warm-up applied everywhere')
  const before = new Map(ids.map(id => [id, synced.get(id)!.length]))
  const term = leader.node.status().term

  const N = 256
  const results = await Promise.all(Array.from({ length: N }, async (_, i) => await leader.node.propose(enc.encode(`p${i}`))))
  t.equal(new Set(results.map(r => r.index)).size, N, 'every proposal acknowledged at its own index')
  await until(() => [...c.members.values()].every(m => m.applied.length === N + 1), 'all applied everywhere')

  for (const id of ids) {
    const batches = synced.get(id)!.slice(before.get(id))
    const withEntries = batches.filter(b => b.entries > 0)
    const entries = withEntries.reduce((s, b) => s + b.entries, 0)
    t.equal(entries, N, `${id}${id === leader.id ? ' (leader)' : ''}: the ${N} entries were synced exactly once`)
    // The first proposal starts a Ready of its own; the other 255 wait for
    // its write and go together. A follower gets them in as many appends.
    t.ok(withEntries.length <= 4, `${id}: ${withEntries.length} synced batches carried the ${N} entries (${withEntries.map(b => b.entries).join(', ')})`)
    // A commit index alone is written without fsync, so no synced batch is empty of entries beyond term or vote changes.
    // (Only while the term holds: a vote is synced, rightly.)
    if (c.members.get(id)!.node.status().term === term) t.equal(batches.length, withEntries.length, `${id}: no fsync for commit-only state`)
  }
})
