// Bulk traffic to a member reached only over QUIC gets a TCP connection
// dialed beside it (cheaper per byte in js-libp2p); control traffic keeps QUIC.
import t from 'tap'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { createServer, type Socket } from 'node:net'
import { connectionTo, PeerUnreachableError, prepareBulk } from '../../p2p/dialer.js'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../quic/transports.js'

async function node (): Promise<Libp2p> {
  return await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
}

/** Records every dial `node` makes from now on (dials start synchronously, so a call that returned without one made none). */
function dialSpy (node: Libp2p): unknown[] {
  const seen: unknown[] = []
  const dial = node.dial.bind(node)
  node.dial = async (...args: Parameters<Libp2p['dial']>) => { seen.push(args[0]); return await dial(...args) }
  return seen
}

async function until (cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return cond()
}

t.test('bulk finds only QUIC: it uses it now and a TCP connection is dialed beside it for later', async t => {
  const a = await node()
  const b = await node()
  t.teardown(async () => { await a.stop(); await b.stop() })
  const bId = b.peerId.toString()
  const addrs = b.getMultiaddrs().map(m => m.toString())
  const quicAddr = b.getMultiaddrs().find(m => transportOf(m) === 'quic')
  t.ok(quicAddr, 'b listens on QUIC')
  await a.dial(quicAddr!)
  const transports = (): string[] => a.getConnections(b.peerId).filter(c => c.status === 'open').map(c => transportOf(c.remoteAddr)).sort()
  t.same(transports(), ['quic'], 'only a QUIC connection at first')

  const first = await connectionTo(a, bId, addrs, 'bulk')
  t.equal(transportOf(first.remoteAddr), 'quic', 'the first bulk stream does not wait for TCP')
  t.ok(await until(() => transports().includes('tcp'), 10_000), 'a TCP connection comes up beside the QUIC one')
  t.same(transports(), ['quic', 'tcp'], 'both stay open')

  const later = await connectionTo(a, bId, addrs, 'bulk')
  t.equal(transportOf(later.remoteAddr), 'tcp', 'bulk then goes over TCP')
  const control = await connectionTo(a, bId, addrs, 'control')
  t.equal(transportOf(control.remoteAddr), 'quic', 'control traffic keeps QUIC')
})

t.test('a member with no TCP address: bulk stays on QUIC and nothing else is dialed', async t => {
  const a = await node()
  const b = await node()
  t.teardown(async () => { await a.stop(); await b.stop() })
  const quicOnly = b.getMultiaddrs().filter(m => transportOf(m) === 'quic').map(m => m.toString())
  await a.dial(b.getMultiaddrs().find(m => transportOf(m) === 'quic')!)
  const dials = dialSpy(a)
  const c = await connectionTo(a, b.peerId.toString(), quicOnly, 'bulk')
  t.equal(transportOf(c.remoteAddr), 'quic')
  t.same(dials, [], 'nothing was dialed')
  t.equal(a.getConnections(b.peerId).length, 1, 'still one connection')
})

t.test('prepareBulk dials the TCP connection ahead of need, once', async t => {
  const a = await node()
  const b = await node()
  const c = await node()
  t.teardown(async () => { await a.stop(); await b.stop(); await c.stop() })
  const transports = (to: Libp2p): string[] => a.getConnections(to.peerId).filter(x => x.status === 'open').map(x => transportOf(x.remoteAddr)).sort()
  const addrsOf = (n: Libp2p): string[] => n.getMultiaddrs().map(m => m.toString())

  // Reached over QUIC (control traffic came first): TCP comes up beside it.
  await a.dial(b.getMultiaddrs().find(m => transportOf(m) === 'quic')!)
  await prepareBulk(a, b.peerId.toString(), addrsOf(b))
  t.ok(await until(() => transports(b).includes('tcp'), 10_000), 'a TCP connection comes up beside the QUIC one')
  const dials = dialSpy(a)
  t.equal(prepareBulk(a, b.peerId.toString(), addrsOf(b)), undefined, 'asked again with TCP open: nothing to dial')
  t.same(dials, [], 'and nothing was dialed')
  t.same(transports(b), ['quic', 'tcp'])

  // Not connected at all yet: the TCP connection is the first.
  await prepareBulk(a, c.peerId.toString(), addrsOf(c))
  t.ok(await until(() => transports(c).includes('tcp'), 10_000), 'a member not yet connected gets a TCP connection')
  const bulk = await connectionTo(a, c.peerId.toString(), addrsOf(c), 'bulk')
  t.equal(transportOf(bulk.remoteAddr), 'tcp', 'bulk traffic then finds TCP at once')

  // No TCP address: nothing is dialed.
  const d = await node()
  t.teardown(async () => { await d.stop() })
  const before = dials.length
  t.equal(prepareBulk(a, d.peerId.toString(), d.getMultiaddrs().filter(m => transportOf(m) === 'quic').map(m => m.toString())), undefined, 'a member with only QUIC addresses: nothing to dial')
  t.equal(dials.length, before, 'and it is not dialed')
  t.equal(a.getConnections(d.peerId).length, 0)
  t.equal(prepareBulk(a, 'not-a-peer-id', addrsOf(d)), undefined, 'a malformed member id is ignored')
})

t.test('a dial to the member already under way, stuck on a dead address, does not hold up its live address', async t => {
  const a = await node()
  const b = await node()
  // A "dead" address: TCP accepts, then nothing is ever said (the Noise handshake waits out libp2p's 6 s per address).
  const held: Socket[] = []
  const silent = createServer(sock => { held.push(sock) })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const sock of held) sock.destroy()
    silent.close()
    await a.stop()
    await b.stop()
  })
  const bId = b.peerId.toString()
  const port = (silent.address() as { port: number }).port
  // What a cut leaves behind: a dial to the member, started before the link came back, working through an address that never answers.
  const stuck = a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${port}/p2p/${bId}`), { signal: AbortSignal.timeout(30_000) })
    .then(() => 'connected', (err: Error) => err.name)
  t.ok(await until(() => held.length > 0, 5_000), 'the stuck dial reached the silent address')
  // libp2p gives up on that address by closing the socket: until then, the stuck dial is under way.
  let given = false
  held[0]?.on('close', () => { given = true })

  const conn = await connectionTo(a, bId, b.getMultiaddrs().map(m => m.toString()), 'control')
  t.equal(conn.remotePeer.toString(), bId, 'connected to the member')
  t.notOk(given, 'before the stuck dial gave up on the silent address: the new dial did not wait behind it')
  t.not(await stuck, 'connected', 'and did not join it (joined, the stuck dial would have gone on to the live address)')
})

t.test('an address that another peer answers on is refused, and that connection closed', async t => {
  const a = await node()
  const b = await node()
  const c = await node()
  t.teardown(async () => { await a.stop(); await b.stop(); await c.stop() })
  // c holds the address now (a restarted host, a reused IP); a looks for b there.
  const cAddrs = c.getMultiaddrs().map(m => m.toString().split('/p2p/')[0] ?? '')
  const err = await connectionTo(a, b.peerId.toString(), cAddrs, 'control').then(() => undefined, (e: Error) => e)
  t.ok(err instanceof PeerUnreachableError, `refused: ${err?.message ?? 'it connected'}`)
  t.match(err?.message ?? '', /answered as/, 'the error names who answered')
  t.equal(a.getConnections(b.peerId).length, 0, 'no connection to b')
  t.ok(await until(() => a.getConnections(c.peerId).length === 0, 5_000), 'the connection to c is closed')
})
