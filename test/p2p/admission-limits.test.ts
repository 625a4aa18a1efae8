// Bounds of admission: the evicted list never grows past MAX_EVICTED (an old
// cluster.json with a huge `revoked` list still loads), and failed proofs are
// counted per source address, so fresh peer ids from one machine do not get
// fresh tries (real libp2p nodes on loopback).
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { lpStream } from '@libp2p/utils'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { Admission } from '../../p2p/admission/admission.js'
import { MAX_EVICTED, type ClusterSecrets } from '../../p2p/admission/secrets.js'
import { FailureTable, ipv6Prefix64, MAX_SOURCES, sourceOf } from '../../p2p/admission/failure-table.js'
import { createBoltNode, type BoltLibp2p } from '../../p2p/node.js'
import { ADMIT_PROTOCOL, decodeAdmit, encodeAdmit } from '../../p2p/admission/messages.js'
import { clusterKeyFingerprint, formatToken, newClusterId, newClusterKey, newSecret, parseToken } from '../../p2p/token.js'
import { EPHEMERAL_LISTEN, transportOf } from '../../quic/transports.js'
import { ClusterFileSchema } from '../../agent/cluster-file.js'

t.test('the evicted list is bounded, newest kept; an old cluster.json with a huge revoked list loads', async t => {
  const ids = Array.from({ length: 5000 }, (_, i) => `peer-${i}`)
  const a = new Admission({ evicted: ids })
  t.equal(a.evictedPeers().length, MAX_EVICTED)
  t.equal(a.evictedPeers().at(-1), 'peer-4999', 'the newest are kept')
  t.notOk(a.isEvicted('peer-0'), 'the oldest are forgotten')
  const old = {
    version: 1, clusterId: 'ab'.repeat(8), clusterKey: 'cd'.repeat(32), joinSecret: 'ef'.repeat(32), secretVersion: 1,
    name: 'n', role: 'server', incarnation: 3, seeds: [], left: false,
    revoked: Array.from({ length: 20_000 }, (_, i) => `left-${i}`)
  }
  const parsed = ClusterFileSchema.safeParse(old)
  t.ok(parsed.success, 'a file from before evict parses, past 10,000 revoked entries')
  t.same(parsed.success ? [parsed.data.keyVersion, parsed.data.evicted, 'revoked' in parsed.data] : [], [1, [], false], 'key version 1, nobody evicted, revoked dropped')
  t.notOk(ClusterFileSchema.safeParse({ ...old, evicted: Array.from({ length: MAX_EVICTED + 1 }, (_, i) => `e${i}`) }).success, 'the evicted list is bounded on disk too')
})

t.test('failure table: a source is refused after its failures, the table is bounded, IPv6 grouped by /64', async t => {
  let now = 0
  const f = new FailureTable(3, 1000, () => now)
  for (let i = 0; i < 3; i++) { t.notOk(f.refused('10.0.0.1')); f.fail('10.0.0.1') }
  t.ok(f.refused('10.0.0.1'), 'refused after 3 failures')
  t.notOk(f.refused('10.0.0.2'), 'another source is not')
  now = 1001
  t.notOk(f.refused('10.0.0.1'), 'free again once the window ends')
  for (let i = 0; i < MAX_SOURCES + 50; i++) f.fail(`s${i}`)
  t.equal(f.size, MAX_SOURCES, 'bounded')
  t.equal(ipv6Prefix64('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  t.equal(ipv6Prefix64('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(ipv6Prefix64('::1'), '0:0:0:0::/64')
  t.equal(sourceOf(multiaddr('/ip6/2001:db8:1:2::99/tcp/1'), 'p'), sourceOf(multiaddr('/ip6/2001:db8:1:2:ffff::1/udp/1/quic-v1'), 'q'), 'one /64, one source')
  t.equal(sourceOf(multiaddr('/ip4/192.0.2.7/tcp/1'), 'p'), '192.0.2.7')
  t.equal(sourceOf(multiaddr('/dns4/example.com/tcp/1'), 'p'), 'peer:p', 'no address: the peer id')
  fc.assert(fc.property(fc.ipV6(), (ip) => {
    const p = ipv6Prefix64(ip)
    return p.endsWith('::/64') || ip.includes('.')
  }), { numRuns: 500 })
})

t.test('failed proofs are limited per source address: a fresh peer id from the same machine gets no fresh tries', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-adm-ip-'))
  const clusterKey = newClusterKey()
  const secrets: ClusterSecrets = { clusterId: newClusterId(), clusterKey, joinSecret: newSecret(), secretVersion: 1 }
  const token = parseToken(formatToken({ clusterId: secrets.clusterId, fingerprint: clusterKeyFingerprint(Buffer.from(clusterKey, 'hex')), secret: secrets.joinSecret }))
  const admission = new Admission({ secrets, failuresPerSource: 3, banMs: 60_000 })
  const member = await createBoltNode({ dataDir: join(dir, 'member'), listen: EPHEMERAL_LISTEN, dhtServer: true, admission })
  await member.start()
  await admission.start(member)
  const nodes: BoltLibp2p[] = [member]
  t.teardown(async () => {
    for (const n of nodes) await Promise.resolve(n.stop()).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })
  const addr = member.getMultiaddrs().find(m => transportOf(m) === 'tcp')!
  const fresh = async (i: number): Promise<{ node: BoltLibp2p, admission: Admission }> => {
    const a = new Admission()
    const n = await createBoltNode({ dataDir: join(dir, `guess-${i}`), listen: EPHEMERAL_LISTEN, dhtServer: false, admission: a })
    await n.start()
    await a.start(n)
    nodes.push(n)
    return { node: n, admission: a }
  }
  /** A guesser that sends a made-up proof (the listener's own proof is checked by the dialer first, so only a sent proof can fail at the listener). */
  const guess = async (n: BoltLibp2p): Promise<string> => {
    const conn = await n.dial(addr, { signal: AbortSignal.timeout(10_000) })
    const stream = await conn.newStream(ADMIT_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    const lp = lpStream(stream)
    await lp.write(encodeAdmit({ t: 'hello', mode: 'join', clusterId: secrets.clusterId, nonce: randomBytes(32).toString('hex'), secretVersion: 0, keyVersion: 1 }))
    const reply = decodeAdmit((await lp.read()).subarray())
    if (reply.t !== 'challenge') return reply.t === 'reject' ? reply.reason : reply.t
    await lp.write(encodeAdmit({ t: 'proof', proof: randomBytes(32).toString('hex'), secretVersion: 0 }))
    const last = decodeAdmit((await lp.read()).subarray())
    return last.t === 'reject' ? last.reason : last.t
  }
  for (let i = 0; i < 3; i++) {
    const g = await fresh(i)
    t.equal(await guess(g.node), 'token', `guess ${i + 1} from a fresh peer id is checked, and fails`)
  }
  const next = await fresh(3)
  await t.rejects(next.admission.join(addr, token), { name: 'AdmissionRejectedError', reason: 'rate' }, 'a fourth peer id from the same address is refused before any proof, even with the right token')
})
