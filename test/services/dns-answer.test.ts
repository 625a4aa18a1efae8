// The DNS answerer (pure) and the catalog's desired-state maths: records for
// healthy instances only, NXDOMAIN under .bolt, forward outside; malformed
// queries fuzzed (FORMERR or dropped, never a throw).
import t from 'tap'
import fc from 'fast-check'
import dnsPacket from 'dns-packet'
import { answerQuery, labelOfAddress } from '../../agent/services/dns-answer.js'
import { catalogDiff, desiredCatalog, nodeAddress, type CatalogNode } from '../../agent/services/catalog-keeper.js'
import { ServiceCatalog, type CatalogEntry } from '../../agent/state/services.js'
import { CapsuleTable } from '../../agent/state/capsules.js'
import { CapsuleSpecSchema } from '../../agent/scheduler/spec.js'

const entries: CatalogEntry[] = [
  { service: 'web', instance: 'web-0', node: 'n1', generation: 1, address: '10.0.0.5', ports: [{ host: 20311, container: 80, proto: 'tcp' }], health: 'healthy' },
  { service: 'web', instance: 'web-1', node: 'n2', generation: 1, address: '10.0.0.6', ports: [{ host: 20417, container: 80, proto: 'tcp' }, { host: 20418, container: 53, proto: 'udp' }], health: 'healthy' },
  { service: 'web', instance: 'web-2', node: 'n3', generation: 1, address: '10.0.0.7', ports: [{ host: 20500, container: 80, proto: 'tcp' }], health: 'starting' }
]
const lookup = (name: string): CatalogEntry[] => name.toLowerCase() === 'web' ? entries : []

function ask (name: string, type: string, transport: 'udp' | 'tcp' = 'udp'): ReturnType<typeof dnsPacket.decode> | string {
  const q = dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: type as 'A', name }] })
  const d = answerQuery(q, lookup, transport)
  if (d.kind !== 'answer') return d.kind
  return dnsPacket.decode(d.bytes)
}

t.test('A, SRV, NXDOMAIN, forward', async t => {
  const a = ask('WEB.service.bolt', 'A')
  if (typeof a === 'string') { t.fail(a); return }
  t.equal(a.id, 4242)
  t.equal((a as { rcode?: string }).rcode, 'NOERROR')
  t.same(a.answers?.map(x => (x as { data: string }).data).sort(), ['10.0.0.5', '10.0.0.6'], 'healthy instances only, case-insensitive')
  t.ok(a.answers?.every(x => (x as { ttl: number }).ttl === 5), 'TTL 5 s')
  const srv = ask('web.service.bolt', 'SRV')
  if (typeof srv === 'string') { t.fail(srv); return }
  t.same(srv.answers?.map(x => (x as { data: { port: number } }).data.port).sort(), [20311, 20417, 20418])
  t.same(srv.additionals?.map(x => `${x.name}=${(x as { data: string }).data}`).sort(), [`${labelOfAddress('10.0.0.5')}.addr.bolt=10.0.0.5`, '0a000006.addr.bolt=10.0.0.6'])
  const udpOnly = ask('_web._udp.service.bolt', 'SRV')
  if (typeof udpOnly === 'string') { t.fail(udpOnly); return }
  t.same(udpOnly.answers?.map(x => (x as { data: { port: number } }).data.port), [20418], 'RFC 2782 form filters by protocol')
  const target = ask('0a000005.addr.bolt', 'A')
  t.same(typeof target !== 'string' && target.answers?.map(x => (x as { data: string }).data), ['10.0.0.5'], 'SRV targets resolve')
  for (const n of ['nope.service.bolt', 'bolt', 'x.y.bolt', 'zz.addr.bolt']) {
    const r = ask(n, 'A')
    t.equal(typeof r !== 'string' && (r as { rcode?: string }).rcode, 'NXDOMAIN', `${n}: NXDOMAIN`)
  }
  const aaaa = ask('web.service.bolt', 'AAAA')
  t.same(typeof aaaa !== 'string' && [(aaaa as { rcode?: string }).rcode, aaaa.answers?.length], ['NOERROR', 0], 'no AAAA: NODATA, not NXDOMAIN')
  t.equal(ask('example.com', 'A'), 'forward')
  t.equal(ask('bolt.example.com', 'A'), 'forward')
})

t.test('malformed input: FORMERR with the id, or dropped; never a throw', async t => {
  t.equal(answerQuery(Buffer.alloc(5), lookup, 'udp').kind, 'drop', 'shorter than a header')
  const resp = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'web.service.bolt' }] })
  t.equal(answerQuery(resp, lookup, 'udp').kind, 'drop', 'responses are never answered')
  const two = dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'a.bolt' }, { type: 'A', name: 'b.bolt' }] })
  const d = answerQuery(two, lookup, 'udp')
  t.equal(d.kind === 'answer' && dnsPacket.decode(d.bytes).id, 7)
  t.equal(d.kind === 'answer' && (dnsPacket.decode(d.bytes) as { rcode?: string }).rcode, 'FORMERR')
  const garbage = Buffer.concat([Buffer.from([0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([200, 1, 2])])
  const g = answerQuery(garbage, lookup, 'udp')
  t.equal(g.kind === 'answer' && (dnsPacket.decode(g.bytes) as { rcode?: string }).rcode, 'FORMERR', 'a broken question is FORMERR')
  const valid = dnsPacket.encode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'SRV', name: 'web.service.bolt' }] })
  fc.assert(fc.property(fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    // Mutations of a valid query: flipped bytes, cut short, extended.
    fc.tuple(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat(valid.length + 20)).map(([flips, cut]) => {
      const b = Buffer.concat([valid, Buffer.alloc(20)]).subarray(0, cut)
      for (const [i, v] of flips) if (i < b.length) b[i] = v
      return new Uint8Array(b)
    })
  ), fc.constantFrom('udp' as const, 'tcp' as const), (bytes, transport) => {
    const d = answerQuery(Buffer.from(bytes), lookup, transport)
    if (d.kind !== 'answer') return true
    const r = dnsPacket.decode(d.bytes)
    return r.type === 'response' && (transport === 'tcp' || d.bytes.byteLength <= 4096)
  }), { numRuns: 20_000 })
})

t.test('the catalog the leader wants: running, ports, not unhealthy, node not dead', async t => {
  const table = new CapsuleTable()
  const spec = CapsuleSpecSchema.parse({ name: 'web', image: 'x', replicas: 4, ports: [{ container: 8080 }], service: 'site', health: { check: { kind: 'exec', command: 'true' } } })
  table.apply({ op: 'capsule.create', req: 'c', spec })
  const nodes = ['n1', 'n2', 'n3', 'n4']
  for (let i = 0; i < 4; i++) {
    table.apply({ op: 'capsule.place', req: `p${i}`, instance: `web-${i}`, node: nodes[i]!, gpuIndexes: [], generation: 0 })
    table.apply({ op: 'capsule.report', req: `r${i}`, instance: `web-${i}`, node: nodes[i]!, generation: 1, state: 'running', exitCode: null, reason: null, restarts: 0 })
  }
  table.apply({ op: 'instance.health', req: 'h', node: 'n1', updates: [{ instance: 'web-0', generation: 1, health: 'healthy' }] })
  table.apply({ op: 'instance.health', req: 'h2', node: 'n2', updates: [{ instance: 'web-1', generation: 1, health: 'unhealthy' }] })
  const view = new Map<string, CatalogNode>([['n1', { state: 'alive', address: '10.0.0.1' }], ['n2', { state: 'alive', address: '10.0.0.2' }], ['n3', { state: 'dead', address: '10.0.0.3' }], ['n4', { state: 'suspect', address: '10.0.0.4' }]])
  const want = desiredCatalog(table.list(), view)
  t.same(want.map(e => `${e.service}/${e.instance}/${e.health}/${e.address}:${e.ports[0]?.host ?? 0}`), ['site/web-0/healthy/10.0.0.1:8080', 'site/web-3/starting/10.0.0.4:8080'], 'unhealthy and dead-node instances are left out')
  const cat = new ServiceCatalog()
  const d1 = catalogDiff(cat.entries(), want)
  t.equal(d1.set.length, 2)
  cat.apply({ op: 'catalog.update', req: '', ...d1 })
  t.same(catalogDiff(cat.entries(), want), { set: [], remove: [] }, 'nothing to write while nothing changes')
  view.set('n1', { state: 'dead', address: '10.0.0.1' })
  t.same(catalogDiff(cat.entries(), desiredCatalog(table.list(), view)), { set: [], remove: ['web-0'] }, 'a dead node takes its entries out')
  t.same(catalogDiff([], want, 1).set.length, 1, 'bounded')
})

t.test('nodeAddress prefers a routable IPv4 address', async t => {
  t.equal(nodeAddress(['/ip4/127.0.0.1/udp/1/quic-v1', '/ip4/10.1.2.3/tcp/7946']), '10.1.2.3')
  t.equal(nodeAddress(['/ip4/127.0.0.1/tcp/1']), '127.0.0.1')
  t.equal(nodeAddress(['/ip6/::1/tcp/1', '/ip6/fd00::5/tcp/1']), 'fd00::5')
  t.equal(nodeAddress([]), null)
  t.equal(labelOfAddress('fd00::5'), 'fd000000000000000000000000000005')
})
