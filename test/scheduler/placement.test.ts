import t from 'tap'
import fc from 'fast-check'
import { CapacityView, firstFitDecreasing, type Demand, type NodeCapacity } from '../../agent/scheduler/placement.js'

const G = 1024 ** 3
const node = (id: string, cpus: number, memG: number, labels: Record<string, string> = {}, gpus: NodeCapacity['gpus'] = []): NodeCapacity => ({ id, cpus, memoryBytes: memG * G, labels, gpus })
const demand = (over: Partial<Demand> = {}): Demand => ({ capsule: 'c', cpu: 1, memoryBytes: G, gpus: { count: 0 }, on: {}, strategy: 'binpack', ...over })

t.test('binpack fills one node before the next; spread balances', async t => {
  const nodes = [node('a', 4, 8), node('b', 4, 8)]
  const bp = new CapacityView(nodes)
  const placed = [1, 2, 3].map(i => bp.place(demand({ capsule: `c${i}` })))
  t.same(placed.map(p => p.ok && p.node), ['a', 'a', 'a'], 'binpack keeps using the fullest node')
  const sp = new CapacityView(nodes)
  const spread = [1, 2].map(i => sp.place(demand({ capsule: `c${i}`, strategy: 'spread' })))
  t.same(spread.map(p => p.ok && p.node), ['a', 'b'], 'spread alternates')
})

t.test('replicas of one capsule go to different nodes when they fit', async t => {
  const v = new CapacityView([node('a', 8, 16), node('b', 8, 16), node('c', 8, 16)])
  const nodes = [0, 1, 2].map(() => { const r = v.place(demand({ capsule: 'web' })); return r.ok ? r.node : '' })
  t.same(new Set(nodes).size, 3)
})

t.test('selectors, GPUs and impossible requests', async t => {
  const gpus = [{ vendor: 'nvidia', model: 'NVIDIA A100', memoryBytes: 80 * G, index: 0 }, { vendor: 'nvidia', model: 'NVIDIA A100', memoryBytes: 80 * G, index: 1 }]
  const v = new CapacityView([node('eu1', 4, 8, { zone: 'eu' }), node('us1', 16, 64, { zone: 'us' }, gpus)])
  const eu = v.place(demand({ on: { zone: 'eu' } }))
  t.match(eu, { ok: true, node: 'eu1' })
  const g = v.place(demand({ gpus: { count: 2, vendor: 'nvidia', model: 'a100' } }))
  t.match(g, { ok: true, node: 'us1', gpuIndexes: [0, 1] })
  t.match(v.place(demand({ gpus: { count: 1 } })), { ok: false, reason: /no node has 1 GPU free/ }, 'GPUs are not handed out twice')
  t.match(v.place(demand({ on: { zone: 'mars' } })), { ok: false, reason: /no node has labels zone=mars/ })
  t.match(v.place(demand({ cpu: 100 })), { ok: false, reason: /no node has 100 CPUs free/ })
  t.match(v.place(demand({ memoryBytes: 1000 * G })), { ok: false, reason: /memory free/ })
})

t.test('host networking and gaming only on nodes whose config allows them', async t => {
  const v = new CapacityView([
    node('plain', 16, 64, { zone: 'a' }),
    { ...node('net', 4, 8, { zone: 'b' }), allowHostNetwork: true },
    { ...node('games', 4, 8, { zone: 'b' }), allowGaming: true }
  ])
  t.match(v.place(demand({ capsule: 'h', hostNetwork: true })), { ok: true, node: 'net' }, 'host network: the node that allows it, though another has more room')
  t.match(v.place(demand({ capsule: 'g', gaming: true })), { ok: true, node: 'games' }, 'gaming: the node that opts in')
  t.match(v.place(demand({ capsule: 'd', strategy: 'spread' })), { ok: true, node: 'plain' }, 'an ordinary capsule goes anywhere (here the emptiest)')
  t.same(v.place(demand({ capsule: 'h2', hostNetwork: true, on: { zone: 'a' } })), { ok: false, reason: 'no node allows host networking (set [capsules] allow_host_network)' })
  t.same(v.place(demand({ capsule: 'g2', gaming: true, on: { zone: 'a' } })), { ok: false, reason: 'no node allows gaming capsules (set [capsules] allow_gaming)' })
  t.same(v.place(demand({ capsule: 'both', gaming: true, hostNetwork: true })), { ok: false, reason: 'no node allows host networking and gaming capsules (set [capsules] allow_host_network and [capsules] allow_gaming)' }, 'both asked: one node must allow both')
  t.same(new CapacityView([node('old', 4, 8)]).place(demand({ hostNetwork: true })), { ok: false, reason: 'no node allows host networking (set [capsules] allow_host_network)' }, 'a node that gossips no policy (an older agent) allows neither')
})

t.test('never over-commits a node (property)', async t => {
  fc.assert(fc.property(
    fc.array(fc.record({ cpus: fc.integer({ min: 1, max: 16 }), memG: fc.integer({ min: 1, max: 32 }) }), { minLength: 1, maxLength: 8 }),
    fc.array(fc.record({ cpu: fc.double({ min: 0.1, max: 8, noNaN: true }), memG: fc.double({ min: 0.1, max: 16, noNaN: true }), spread: fc.boolean() }), { maxLength: 60 }),
    (ns, ds) => {
      const nodes = ns.map((n, i) => node(`n${i}`, n.cpus, n.memG))
      const v = new CapacityView(nodes)
      const used = new Map<string, { cpu: number, mem: number }>()
      ds.forEach((d, i) => {
        const r = v.place(demand({ capsule: `c${i}`, cpu: d.cpu, memoryBytes: Math.round(d.memG * G), strategy: d.spread ? 'spread' : 'binpack' }))
        if (!r.ok) return
        const u = used.get(r.node) ?? { cpu: 0, mem: 0 }
        u.cpu += d.cpu
        u.mem += Math.round(d.memG * G)
        used.set(r.node, u)
      })
      for (const n of nodes) {
        const u = used.get(n.id)
        if (u !== undefined && (u.cpu > n.cpus + 1e-6 || u.mem > n.memoryBytes)) return false
      }
      return true
    }), { numRuns: 300 })
  t.pass('no node ever holds more than its capacity')
})

t.test('first-fit-decreasing baseline', async t => {
  t.equal(firstFitDecreasing([node('a', 4, 8), node('b', 4, 8)], [{ cpu: 2, memoryBytes: G }, { cpu: 2, memoryBytes: G }, { cpu: 1, memoryBytes: G }]), 2)
})
