// Three MembershipService instances on real libp2p nodes (QUIC and TCP on
// 127.0.0.1): join, all alive; one stopped abruptly → dead; restarted with the
// same peer id → alive again at a higher incarnation; a graceful leave → left.
// Intervals are shortened through the config; timeouts only guard hangs.
import t from 'tap'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { transportModules, transportOf, EPHEMERAL_LISTEN } from '../../../quic/transports.js'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { MembershipService, JoinError, SWIM_PROTOCOL } from '../../../p2p/membership/service.js'
import { MAX_MESSAGE_BYTES } from '../../../p2p/membership/codec.js'
import { emptyMeta } from '../../../p2p/membership/meta.js'
import { profile } from '../../../p2p/membership/profiles.js'
import { suspicionBoundMs } from '../../../p2p/membership/core/suspicion.js'
import type { MemberEvent, MemberState } from '../../../p2p/membership/core/types.js'
import { waitOrFail } from '../../helpers/harness.js'

const config = profile('lan', {
  tickMs: 20,
  probeIntervalMs: 300,
  probeTimeoutMs: 150,
  gossipIntervalMs: 40,
  pushPullIntervalMs: 2000,
  gossipToTheDeadMs: 10_000
})

interface Agent { node: Libp2p, svc: MembershipService, key: PrivateKey, events: MemberEvent[], persisted: { inc: number } }

async function startAgent (name: string, key?: PrivateKey, persisted = { inc: 0 }, only?: 'quic' | 'tcp', opened?: { n: number }): Promise<Agent> {
  const privateKey = key ?? await generateKeyPair('Ed25519')
  const node = await createLibp2p({ privateKey, addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const svc = new MembershipService({
    libp2p: node,
    ...(opened !== undefined
      ? { openStream: async (peer: string, addrs: string[], protocol: string, signal: AbortSignal) => { opened.n++; return await node.dialProtocol(addrs.map(a => multiaddr(a)), protocol, { signal }) } }
      : {}),
    self: { id: node.peerId.toString(), meta: emptyMeta(name, 'server', node.getMultiaddrs().filter(m => only === undefined || transportOf(m) === only).map(String)) },
    config,
    lastIncarnation: persisted.inc,
    signer: privateKey,
    onIncarnation: inc => { persisted.inc = inc },
  })
  const events: MemberEvent[] = []
  svc.addEventListener('member', e => { events.push((e as CustomEvent<MemberEvent>).detail) })
  await svc.start()
  return { node, svc, key: privateKey, events, persisted }
}

async function stopAgent (a: Agent): Promise<void> {
  await a.svc.stop()
  await a.node.stop()
}


const stateOf = (a: Agent, id: string): MemberState | undefined => a.svc.member(id)?.state
const seedOf = (a: Agent): { id: string, addrs: string[] } => ({ id: a.node.peerId.toString(), addrs: a.node.getMultiaddrs().map(String) })

t.test('three libp2p agents: join, detect a kill, come back with a higher incarnation, leave', async t => {
  const a = await startAgent('a')
  const b = await startAgent('b')
  let c = await startAgent('c')
  const all = [a, b, c]
  t.teardown(async () => { for (const x of all) await stopAgent(x).catch(() => {}) })

  await b.svc.join([seedOf(a)])
  await c.svc.join([seedOf(a)])
  const ids = (): string[] => [a, b, c].map(x => x.node.peerId.toString())
  const joinMs = await waitOrFail('all see 3 alive', () => [a, b, c].every(x => ids().every(id => stateOf(x, id) === 'alive')))
  t.pass(`all three see 3 alive after ${joinMs} ms`)
  t.equal(a.svc.members().length, 3)

  // Stop c without leaving: its node goes away, the others must declare it dead.
  const cid = c.node.peerId.toString()
  const cInc = c.svc.incarnation()
  await stopAgent(c)
  const deadMs = await waitOrFail('a and b see c dead', () => stateOf(a, cid) === 'dead' && stateOf(b, cid) === 'dead')
  t.comment(`c dead after ${deadMs} ms (bound ${suspicionBoundMs(config, 3)} ms)`)
  t.ok(a.events.some(e => e.kind === 'suspect' && e.member.id === cid) || b.events.some(e => e.kind === 'suspect' && e.member.id === cid), 'suspected first')
  const s = a.svc.stats()
  t.ok(s.probesSent > 0 && s.probesFailed > 0, `probes sent ${s.probesSent}, failed ${s.probesFailed}`)
  t.ok(s.bytesIn > 0 && s.bytesOut > 0, `bytes in ${s.bytesIn}, out ${s.bytesOut}`)
  t.equal(s.decodeErrors, 0)

  // Restart c with the same key and its persisted incarnation.
  t.ok(c.persisted.inc >= cInc, 'incarnation was reported for persistence')
  c = await startAgent('c', c.key, c.persisted)
  all.push(c)
  t.equal(c.node.peerId.toString(), cid, 'same peer id')
  t.ok(c.svc.incarnation() > cInc, 'restarted above the persisted incarnation')
  await c.svc.join([seedOf(a)])
  const backMs = await waitOrFail('a and b see c alive again', () => stateOf(a, cid) === 'alive' && stateOf(b, cid) === 'alive')
  t.pass(`c alive again after ${backMs} ms`)
  t.ok((a.svc.member(cid)?.incarnation ?? 0) > cInc, `higher incarnation ${a.svc.member(cid)?.incarnation} > ${cInc}`)
  t.equal(c.svc.member(a.node.peerId.toString())?.state, 'alive', 'c sees a')

  // Graceful leave of b: left, never dead.
  const bid = b.node.peerId.toString()
  const before = { a: a.events.length, c: c.events.length }
  await b.svc.leave()
  await stopAgent(b)
  await waitOrFail('a and c see b left', () => stateOf(a, bid) === 'left' && stateOf(c, bid) === 'left')
  await new Promise(resolve => setTimeout(resolve, suspicionBoundMs(config, 3)))
  t.equal(stateOf(a, bid), 'left', 'still left, not dead')
  const after = [...a.events.slice(before.a), ...c.events.slice(before.c)].filter(e => e.member.id === bid)
  t.notOk(after.some(e => e.kind === 'dead' || e.kind === 'suspect'), `never suspected or dead after leaving (${after.map(e => e.kind).join(', ')})`)
})

for (const only of ['quic', 'tcp'] as const) {
  t.test(`two agents over ${only} only: join and stay alive through probes`, async t => {
    const a = await startAgent(`a-${only}`, undefined, { inc: 0 }, only)
    const b = await startAgent(`b-${only}`, undefined, { inc: 0 }, only)
    t.teardown(async () => { await stopAgent(a); await stopAgent(b) })
    await b.svc.join([{ id: a.node.peerId.toString(), addrs: a.node.getMultiaddrs().filter(m => transportOf(m) === only).map(String) }])
    await waitOrFail('both alive', () => stateOf(a, b.node.peerId.toString()) === 'alive' && stateOf(b, a.node.peerId.toString()) === 'alive')
    await waitOrFail('a few probes answered', () => a.svc.stats().probesSent >= 3 && b.svc.stats().probesSent >= 3)
    t.equal(a.svc.stats().probesFailed + b.svc.stats().probesFailed, 0, 'no probe failed')
    const conns = a.node.getConnections(b.node.peerId)
    t.ok(conns.length > 0 && conns.every(c => transportOf(c.remoteAddr) === only), `connected over ${only}`)
  })
}

t.test('messages to a member share one stream; a stream closed under it is replaced', async t => {
  const opened = { n: 0 }
  const a = await startAgent('reuse-a', undefined, { inc: 0 }, undefined, opened)
  const b = await startAgent('reuse-b')
  t.teardown(async () => { await stopAgent(a); await stopAgent(b) })
  await b.svc.join([seedOf(a)])
  const bid = b.node.peerId.toString()
  await waitOrFail('both alive', () => stateOf(a, bid) === 'alive' && stateOf(b, a.node.peerId.toString()) === 'alive')
  const sentBefore = a.svc.stats().bytesOut
  await waitOrFail('a sent a dozen probes', () => a.svc.stats().probesSent >= 12)
  t.ok(a.svc.stats().bytesOut > sentBefore, 'a kept sending')
  t.ok(opened.n <= 2, `a opened ${opened.n} streams for all its messages to b (one per message before)`)
  // Reset a's stream to b from b's side: a's next messages go on a new one.
  const swimStreams = (): Array<{ abort: (err: Error) => void }> => b.node.getConnections(a.node.peerId).flatMap(c => c.streams.filter(st => st.protocol === SWIM_PROTOCOL && st.direction === 'inbound'))
  await waitOrFail('b has a\'s stream', () => swimStreams().length > 0)
  for (const st of swimStreams()) st.abort(new Error('reset by the test'))
  const failed = a.svc.stats().probesFailed
  const probes = a.svc.stats().probesSent
  const streamsBefore = opened.n
  await waitOrFail('a few more probes', () => a.svc.stats().probesSent >= probes + 5)
  t.ok(opened.n > streamsBefore, `a opened a new stream (${opened.n - streamsBefore})`)
  t.ok(a.svc.stats().probesFailed - failed <= 1, `at most the probe in flight failed (${a.svc.stats().probesFailed - failed})`)
  t.equal(stateOf(a, bid), 'alive')
})

t.test('join through an unreachable seed fails with JoinError', async t => {
  const a = await startAgent('lonely')
  const ghost = await startAgent('ghost')
  const ghostSeed = seedOf(ghost)
  await stopAgent(ghost)
  t.teardown(async () => { await stopAgent(a) })
  await t.rejects(a.svc.join([ghostSeed], { timeoutMs: 3000 }), JoinError)
})

t.test('malformed and oversized frames are counted and do not disturb the service', async t => {
  const a = await startAgent('target')
  const b = await startAgent('prober')
  t.teardown(async () => { await stopAgent(a); await stopAgent(b) })
  const send = async (bytes: Uint8Array): Promise<void> => {
    const stream = await b.node.dialProtocol(a.node.getMultiaddrs()[0]!, SWIM_PROTOCOL)
    const lp = lpStream(stream)
    await lp.write(bytes).catch(() => {})
    await stream.close().catch(() => {})
  }
  await send(Uint8Array.from([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))
  await send(new TextEncoder().encode('not cbor at all'))
  await send(new Uint8Array(MAX_MESSAGE_BYTES + 10))
  await waitOrFail('three decode errors', () => a.svc.stats().decodeErrors === 3)
  await b.svc.join([seedOf(a)])
  await waitOrFail('still works', () => stateOf(a, b.node.peerId.toString()) === 'alive')
  t.pass()
})

t.test('fault hook: drop rate is validated and counted', async t => {
  const a = await startAgent('x')
  const b = await startAgent('y')
  t.teardown(async () => { await stopAgent(a); await stopAgent(b) })
  t.throws(() => a.svc.setDropRate(2), RangeError)
  await b.svc.join([seedOf(a)])
  a.svc.setDropRate(1)
  await waitOrFail('drops counted', () => a.svc.stats().faultDrops > 5)
  a.svc.setDropRate(0)
  t.pass()
})
