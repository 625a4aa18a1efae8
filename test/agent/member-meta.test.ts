// Member metadata is built in one place (agent/member-meta.ts). Issue #22's
// bug: a GPU node re-announced itself with `gpus: []` when its addresses
// changed, and was no longer offered GPU capsules. Here a real agent on a
// fixture GPU tree (two AMD GPUs) gets a new listen address; a second agent
// (a separate process) must still see its GPUs, and the scheduler must still
// place a GPU capsule on it.
import t from 'tap'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { Agent } from '../../agent/agent.js'
import { parseConfig } from '../../agent/config.js'
import { LocalMemberMeta } from '../../agent/member-meta.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'
import { Cluster, FAST_TOML, waitFor } from '../helpers/harness.js'

const here = dirname(fileURLToPath(import.meta.url))
const fixtures = join(here, '..', '..', '..', 'test', 'fixtures', 'gpu')
const AMD_GPUS = [0, 1].map(index => ({ vendor: 'amd', model: 'AMD Instinct MI210', memoryBytes: 68702699520, index }))

t.test('one builder: resources, labels and capsule policy in every announcement', async t => {
  const config = parseConfig('labels = { zone = "eu" }\n[capsules]\nallow_gaming = true\n', 'test')
  const meta = LocalMemberMeta.of(config, { cpus: 4, memoryBytes: 1024, gpus: AMD_GPUS })
  const a = meta.build({ name: 'n', role: 'server', addrs: ['/ip4/10.0.0.1/tcp/1'] })
  const b = meta.build({ name: 'n', role: 'client', addrs: ['/ip4/10.0.0.2/tcp/1'] })
  t.same(a.resources.gpus, AMD_GPUS)
  t.same(b.resources, a.resources, 'a later announcement keeps the resources')
  t.same(b.labels, { zone: 'eu', 'bolt.role': 'auto' })
  t.same(b.capsules, { allowHostNetwork: false, allowGaming: true })
})

t.test('a GPU node keeps its GPUs in gossip after its addresses change', { skip: process.getuid?.() !== 0 ? 'needs root (the agent runs the node runtime)' : false }, async t => {
  const hostRoot = await mkdtemp(join(tmpdir(), 'bolt-meta-gpu-'))
  t.teardown(async () => { await rm(hostRoot, { recursive: true, force: true }) })
  await cp(join(fixtures, 'amd'), hostRoot, { recursive: true })
  const dataDir = await mkdtemp(join(tmpdir(), 'bolt-meta-agent-'))
  const toml = `name = "gpu-node"\nlisten = ["/ip4/127.0.0.1/tcp/0"]\nmdns = false\n[mirror]\nenabled = false\n[raft]\nvoters = 1\n${FAST_TOML}`
  const agent = new Agent({ dataDir, config: parseConfig(toml, 'test'), mode: { kind: 'init' }, log: pino({ level: 'silent' }), hostRoot })
  t.teardown(async () => { await agent.stop(); await rm(dataDir, { recursive: true, force: true }) })
  await agent.start()

  const cluster = await Cluster.create()
  t.teardown(async () => { await cluster.destroy() })
  const peer = await cluster.add('peer', 'mdns = false\n[mirror]\nenabled = false\n')
  const seed = agent.joinAddrs().find(a => a.includes('/tcp/'))!
  await peer.start(['join', seed, '--token', agent.tokenInfo().token])

  type Seen = { addrs: string[], resources: { gpus: unknown[] } } | undefined
  const seenByPeer = async (): Promise<Seen> => (await peer.status())?.members.find(m => m.id === agent.peerId) as Seen
  let seen: Seen
  t.ok(await waitFor(async () => { seen = await seenByPeer(); return seen?.resources.gpus.length === 2 }, 30_000, 300) >= 0, `the peer sees the node's two GPUs (${JSON.stringify(seen?.resources)})`)
  const before = new Set(seen?.addrs)

  // A new listen address: libp2p emits self:peer:update and the agent re-announces its metadata.
  const tm = (agent.libp2p as unknown as { components: { transportManager: { listen: (a: Multiaddr[]) => Promise<void> } } }).components.transportManager
  await tm.listen([multiaddr('/ip4/127.0.0.1/tcp/0')])
  const moved = await waitFor(async () => { seen = await seenByPeer(); return (seen?.addrs ?? []).some(a => !before.has(a) && !a.includes('/p2p-circuit')) }, 30_000, 300)
  t.ok(moved >= 0, `the peer learns the new address (${JSON.stringify(seen?.addrs)})`)
  t.same(seen?.resources.gpus, AMD_GPUS, 'and still sees both GPUs in the same announcement')

  // The scheduler (this node leads) still offers it GPU capsules. The image cannot be pulled: placement is the point.
  const spec = CapsuleSpecSchema.parse({ name: 'gpu-job', image: '127.0.0.1:9/none/gpu:1', resources: { gpus: { count: 2 } } })
  const w = await agent.raft.write({ op: 'capsule.create', spec })
  t.ok(w.ok, 'capsule created')
  let instance: { node: string | null, reason: string | null } | undefined
  const placed = await waitFor(async () => { instance = agent.raft.state.capsules.get('gpu-job')?.instances[0]; return instance?.node !== null && instance?.node !== undefined }, 30_000, 200)
  t.ok(placed >= 0, `a capsule asking for both GPUs is placed on the node (${JSON.stringify(instance)})`)
  t.equal(instance?.node, agent.peerId)
})
