// Cluster-wide tag resolutions over a real ClusterState (the Raft state
// machine, applied directly as a one-node log would): the mirror writes
// nothing to it, an operator's put answers on every node, which resolution
// answers, and when Raft is unavailable.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { ClusterState } from '../../agent/state/cluster-state.js'
import { ClusterTagResolutions, clusterTagKey, type ClusterKv } from '../../agent/mirror/cluster-tags.js'
import { FileTagResolutions, tagKey } from '../../agent/mirror/tag-cache.js'

interface Tap { teardown: (fn: () => Promise<void>) => void }

const D1 = 'sha256:' + '1'.repeat(64)
const D2 = 'sha256:' + '2'.repeat(64)
const MT = 'application/vnd.oci.image.manifest.v1+json'

/** A ClusterState behind the ClusterKv surface; `down` makes reads fail as without a leader; `put` is an operator's authenticated write. */
function kvOver (state: ClusterState): ClusterKv & { down: boolean, put: (key: string, value: string) => void } {
  let index = 0
  const kv = {
    down: false,
    state,
    read: async (k: string) => {
      if (kv.down) throw new Error('no Raft leader is known')
      return state.get(k)
    },
    put: (key: string, value: string) => { state.apply(++index, ClusterState.encode({ op: 'put', key, value, req: randomUUID() })) }
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

const value = (digest: string, at: number): string => JSON.stringify({ digest, mediaType: MT, at })

t.test('a resolution the mirror makes stays on its node: nothing is written to Raft', async t => {
  const { state, a, b } = await setup(t)
  await a.set(KEY, { digest: D1, mediaType: MT, at: 1000 })
  t.equal(state.get(clusterTagKey(KEY)), undefined, 'no key under mirror/tags/')
  t.same(await a.get(KEY), { digest: D1, mediaType: MT, at: 1000, source: 'node' }, 'answered from the node\'s own file')
  t.equal(await b.get(KEY), undefined, 'another node does not know it')
})

t.test('an operator\'s put answers on every node, as the cluster\'s', async t => {
  const { kv, a, b } = await setup(t)
  t.equal(clusterTagKey(KEY), 'mirror/tags/registry.example/team/app:1.0')
  kv.put(clusterTagKey(KEY), value(D1, 1000))
  t.same(await a.get(KEY), { digest: D1, mediaType: MT, at: 1000, source: 'cluster' })
  t.same(await b.get(KEY), { digest: D1, mediaType: MT, at: 1000, source: 'cluster' })
  t.equal(await b.get(tagKey('registry.example', 'team/app', 'other')), undefined, 'an unknown tag has no resolution')
  kv.put(clusterTagKey(tagKey('registry.example', 'team/app', 'bad')), '{"digest":"nope"}')
  t.equal(await b.get(tagKey('registry.example', 'team/app', 'bad')), undefined, 'a malformed value reads as absent')
})

t.test('the newest resolution wins; the same digest counts as the cluster\'s', async t => {
  const { kv, a, b, bFile } = await setup(t)
  kv.put(clusterTagKey(KEY), value(D1, 1000))
  await b.set(KEY, { digest: D2, mediaType: MT, at: 5000 })
  t.same(await b.get(KEY), { digest: D2, mediaType: MT, at: 5000, source: 'node' }, 'B\'s newer own resolution answers, marked as the node\'s')
  t.equal((await a.get(KEY))?.source, 'cluster', 'A knows only the cluster\'s')
  await bFile.set(KEY, { digest: D1, mediaType: MT, at: 9000 })
  t.equal((await b.get(KEY))?.source, 'cluster', 'agreeing with the cluster: reported as the cluster\'s')
})

t.test('without a Raft leader the replica\'s applied state still answers', async t => {
  const { kv, b } = await setup(t)
  kv.put(clusterTagKey(KEY), value(D1, 1000))
  kv.down = true
  t.same(await b.get(KEY), { digest: D1, mediaType: MT, at: 1000, source: 'cluster' })
})

t.test('tags/list joins the node\'s tags and the cluster\'s (when the state can list keys)', async t => {
  const { state, kv, b } = await setup(t)
  kv.put(clusterTagKey(KEY), value(D1, 1000))
  const listing = (state as unknown as { keys?: unknown }).keys
  if (typeof listing !== 'function') {
    t.same(await b.list('registry.example/team/app'), [], 'no key listing in this ClusterState: only the node\'s own tags')
    return
  }
  t.same(await b.list('registry.example/team/app'), ['1.0'])
  t.same(await b.list('registry.example/team/ap'), [], 'a prefix of the repository is another repository')
})
