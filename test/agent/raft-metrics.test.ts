// Raft's figures in /metrics (issue 25): commit latency, entries per synced
// batch, fsync duration and forwarded proposals, after real writes to a real
// two-voter cluster; and the histogram they are kept in.
import t, { type Test } from 'tap'
import { Cluster, waitFor, seedAddr } from '../helpers/harness.js'
import { RAFT_TOML, agreedLeader, apiOf, kv, voters } from '../../scenarios/_raft.js'
import { Histogram, RaftMetrics } from '../../agent/raft/raft-metrics.js'

t.test('a histogram counts each value in the first bucket whose bound it does not exceed', async t => {
  const h = new Histogram([1, 2, 4])
  for (const v of [0, 1, 1.5, 2, 3, 4, 5, 100]) h.observe(v)
  t.same(h.snapshot(), { bounds: [1, 2, 4], cumulative: [2, 4, 6, 8], sum: 116.5, count: 8 })
  t.throws(() => new Histogram([1, 1]), RangeError, 'bounds must increase')
})

t.test('leader changes: each new leader or term, not a leader lost from sight and found again', async t => {
  const m = new RaftMetrics()
  const seq: Array<[string | null, number]> = [[null, 1], ['a', 1], [null, 1], ['a', 1], ['a', 1], [null, 2], ['b', 2], ['b', 3], ['a', 4]]
  const counts = seq.map(([leader, term]) => { m.onLeaderChange({ leader, term }); return m.leaderChanges })
  t.same(counts, [0, 1, 1, 1, 1, 1, 2, 3, 4])
  const g = m.gauges().find(x => x.name === 'bolt_raft_leader_changes_total')
  t.same(g?.read(), [{ labels: {}, value: 4 }], 'exported next to the other Raft metrics')
})

/** `name{labels} value` lines of a Prometheus text page. */
function samples (text: string, name: string): Array<{ labels: string, value: number }> {
  return text.split('\n').filter(l => l.startsWith(name + '{') || l.startsWith(name + ' ')).map(l => {
    const sp = l.lastIndexOf(' ')
    return { labels: l.slice(name.length, sp), value: Number(l.slice(sp + 1)) }
  })
}
const one = (text: string, name: string, labels = ''): number => samples(text, name).find(s => s.labels === labels)?.value ?? Number.NaN

function checkHistogram (t: Test, text: string, name: string): { count: number, sum: number } {
  t.match(text, new RegExp(`^# TYPE ${name} histogram$`, 'm'), `${name} is a histogram`)
  const buckets = samples(text, `${name}_bucket`)
  const values = buckets.map(b => b.value)
  t.ok(buckets.length > 2 && buckets.at(-1)?.labels === '{le="+Inf"}', `${name}: buckets up to +Inf`)
  t.ok(values.every((v, i) => i === 0 || v >= (values[i - 1] as number)), `${name}: cumulative counts never decrease (${values.join(',')})`)
  const count = one(text, `${name}_count`)
  const sum = one(text, `${name}_sum`)
  t.equal(values.at(-1), count, `${name}: +Inf bucket = count`)
  return { count, sum }
}

t.test('commit latency, batch entries, fsync time and forwarded proposals after writes', async t => {
  // Two agents with raft.voters = 3: both are voters, so one is a follower that forwards.
  const cluster = await Cluster.create(RAFT_TOML(3))
  t.teardown(async () => { await cluster.destroy() })
  const a0 = await cluster.add('a0')
  await a0.start(['init'], 120_000)
  const a1 = await cluster.add('a1')
  await a1.start(['join', seedAddr(a0, 'quic'), '--token', a0.ready!.token], 120_000)
  t.ok(await waitFor(async () => (await voters(a0)) === 2, 120_000, 300) >= 0, 'two voters')
  const lead = await agreedLeader([a0, a1], 60_000)
  t.ok(lead !== undefined, 'a leader')
  const leader = lead?.leader === a1.id ? a1 : a0
  const follower = leader === a0 ? a1 : a0
  const lapi = await apiOf(leader)
  const fapi = await apiOf(follower)

  const WRITES = 20
  for (let i = 0; i < WRITES; i++) t.equal((await kv(lapi, 'PUT', `/v1/kv/seq-${i}`, { value: 'x' }, 30_000)).status, 200)
  const concurrent = await Promise.all(Array.from({ length: WRITES }, async (_, i) => (await kv(lapi, 'PUT', `/v1/kv/par-${i}`, { value: 'y' }, 30_000)).status))
  t.ok(concurrent.every(s => s === 200), 'concurrent writes through the leader')
  const FORWARDED = 10
  for (let i = 0; i < FORWARDED; i++) t.equal((await kv(fapi, 'PUT', `/v1/kv/fwd-${i}`, { value: 'z' }, 30_000)).status, 200)

  const page = async (a: typeof leader): Promise<string> => await (await fetch(`${a.ready!.api}/metrics`, { headers: { authorization: `Bearer ${(await apiOf(a)).token}` } })).text()
  const lm = await page(leader)
  const fm = await page(follower)

  const commit = checkHistogram(t, lm, 'bolt_raft_commit_seconds')
  t.ok(commit.count >= 2 * WRITES + FORWARDED, `the leader timed every write it proposed, its own and forwarded (${commit.count})`)
  t.ok(commit.sum > 0 && commit.sum / commit.count < 10, `mean commit time is positive and under the write deadline (${(commit.sum / commit.count * 1000).toFixed(2)} ms)`)

  const batches = checkHistogram(t, lm, 'bolt_raft_batch_entries')
  t.ok(batches.count >= 1 && batches.count <= commit.count + 20, `synced batches were counted (${batches.count})`)
  t.ok(batches.sum >= 2 * WRITES + FORWARDED, `they carried at least the writes (${batches.sum} entries)`)
  t.ok(batches.sum / batches.count >= 1, 'at least one entry per batch that carries entries')

  const fsync = checkHistogram(t, lm, 'bolt_raft_fsync_seconds')
  t.ok(fsync.count >= batches.count, `every batch's sync timed (${fsync.count} >= ${batches.count})`)
  t.ok(fsync.sum > 0 && fsync.sum / fsync.count < 5, `mean fsync time positive and sane (${(fsync.sum / fsync.count * 1000).toFixed(2)} ms)`)
  const followerFsync = checkHistogram(t, fm, 'bolt_raft_fsync_seconds')
  t.ok(followerFsync.count >= 1, 'the follower syncs its log too')

  t.ok(one(fm, 'bolt_raft_proposals_forwarded_total', '{direction="sent"}') >= FORWARDED, 'the follower counts the proposals it forwarded')
  t.ok(one(lm, 'bolt_raft_proposals_forwarded_total', '{direction="served"}') >= FORWARDED, 'the leader counts those it served')
  t.equal(one(lm, 'bolt_raft_proposals_forwarded_total', '{direction="sent"}'), 0, 'the leader forwarded none')
  t.ok(one(lm, 'bolt_raft_leader_changes_total') >= 1 && one(fm, 'bolt_raft_leader_changes_total') >= 1, 'both saw at least one leader take over')
})
