// Cluster-wide tag resolutions over a real ClusterState (the Raft state
// machine, applied directly as a one-node log would): what is written,
// which resolution answers, and when Raft is unavailable.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { ClusterState } from '../../agent/state/cluster-state.js'
import { ClusterTagResolutions, CLUSTER_TAG_REFRESH_MS, clusterTagKey, type ClusterKv } from '../../agent/mirror/cluster-tags.js'
import { FileTagResolutions, tagKey } from '../../agent/mirror/tag-cache.js'

interface Tap { teardown: (fn: () => Promise<void>) => void }

const D1 = 'sha256:' + '1'.repeat(64)
const D2 = 'sha256:' + '2'.repeat(64)
const MT = 'application/vnd.oci.image.manifest.v1+json'

/** A ClusterState behind the ClusterKv surface; `down` makes reads and writes fail as without a leader. */
function kvOver (state: ClusterState): ClusterKv & { writes: number, down: boolean } {
  let index = 0
  const kv = {
    writes: 0,
    down: false,
    state,
    read: async (k: string) => {
      if (kv.down) throw new Error('no Raft leader is known')
      return state.get(k)
    },
    write: async (cmd: { op: 'put', key: string, value: string }) => {
      if (kv.down) throw new Error('no Raft leader is known')
      kv.writes++
      return state.apply(++index, ClusterState.encode({ ...cmd, req: randomUUID() }))
    }
  }
  return kv
}

async function setup (t: Tap): Promise<{ state: ClusterState, kv: ReturnType<typeof kvOver>, a: ClusterTagResolutions, b: ClusterTagResolutions, bFile: FileTagResolutions }> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-cluster-tags-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const state = new ClusterState()
  const kv = kvOver(state)
  const bFile = new FileTagResolutions(join(dir, 'b.json'))
  return {
    state,
    kv,
    a: new ClusterTagResolutions({ kv, local: new FileTagResolutions(join(dir, 'a.json')) }),
    b: new ClusterTagResolutions({ kv, local: bFile }),
    bFile
  }
}

const KEY = tagKey('registry.example', 'team/app', '1.0')

t.test('a resolution recorded by one node answers on another, as the cluster\'s', async t => {
  const { state, a, b } = await setup(t)
  await a.set(KEY, { digest: D1, mediaType: MT, at: 1000 })
  t.match(state.get(clusterTagKey(KEY)), D1, 'written under mirror/tags/<registry>/<repo>:<tag>')
  t.equal(clusterTagKey(KEY), 'mirror/tags/registry.example/team/app:1.0')
  t.same(await b.get(KEY), { digest: D1, mediaType: MT, at: 1000, source: 'cluster' })
  t.equal(await b.get(tagKey('registry.example', 'team/app', 'other')), undefined, 'an unknown tag has no resolution')
})

t.test('an unchanged resolution is not rewritten until the refresh interval passes', async t => {
  const { kv, a, b } = await setup(t)
  await a.set(KEY, { digest: D1, mediaType: MT, at: 1000 })
  await b.set(KEY, { digest: D1, mediaType: MT, at: 2000 })
  t.equal(kv.writes, 1, 'a second mirror resolving the same digest writes nothing')
  await b.set(KEY, { digest: D1, mediaType: MT, at: 1000 + CLUSTER_TAG_REFRESH_MS })
  t.equal(kv.writes, 2, 'refreshed after the interval')
  await b.set(KEY, { digest: D2, mediaType: MT, at: 1000 + CLUSTER_TAG_REFRESH_MS + 1 })
  t.equal(kv.writes, 3, 'a moved tag is written at once')
  t.equal((await a.get(KEY))?.digest, D2, 'the other node sees the tag move')
})

t.test('the newest resolution wins; the same digest counts as the cluster\'s', async t => {
  const { kv, a, b, bFile } = await setup(t)
  await a.set(KEY, { digest: D1, mediaType: MT, at: 1000 })
  // B resolved the tag later to another digest but could not record it (Raft down at that moment).
  kv.down = true
  await b.set(KEY, { digest: D2, mediaType: MT, at: 5000 })
  kv.down = false
  t.same(await b.get(KEY), { digest: D2, mediaType: MT, at: 5000, source: 'node' }, 'B\'s newer own resolution answers, marked as the node\'s')
  t.equal((await a.get(KEY))?.source, 'cluster', 'A knows only the cluster\'s')
  await bFile.set(KEY, { digest: D1, mediaType: MT, at: 9000 })
  t.equal((await b.get(KEY))?.source, 'cluster', 'agreeing with the cluster: reported as the cluster\'s')
})

t.test('a failed write pauses cluster writes instead of delaying every manifest', async t => {
  const { kv, a } = await setup(t)
  kv.down = true
  await a.set(KEY, { digest: D1, mediaType: MT, at: 1000 })
  kv.down = false
  await a.set(tagKey('registry.example', 'team/app', '2.0'), { digest: D2, mediaType: MT, at: 1001 })
  t.equal(kv.writes, 0, 'no write attempted during the back-off')
  t.equal((await a.get(KEY))?.source, 'node', 'the resolution is still kept on this node')
})

t.test('without a Raft leader the replica\'s applied state still answers', async t => {
  const { kv, a, b } = await setup(t)
  await a.set(KEY, { digest: D1, mediaType: MT, at: 1000 })
  kv.down = true
  t.same(await b.get(KEY), { digest: D1, mediaType: MT, at: 1000, source: 'cluster' })
})

t.test('tags/list joins the node\'s tags and the cluster\'s (when the state can list keys)', async t => {
  const { state, a, b } = await setup(t)
  await a.set(KEY, { digest: D1, mediaType: MT, at: 1000 })
  const listing = (state as unknown as { keys?: unknown }).keys
  if (typeof listing !== 'function') {
    t.same(await b.list('registry.example/team/app'), [], 'no key listing in this ClusterState: only the node\'s own tags')
    return
  }
  t.same(await b.list('registry.example/team/app'), ['1.0'])
  t.same(await b.list('registry.example/team/ap'), [], 'a prefix of the repository is another repository')
})
