// Bulk traffic to a member reached only over QUIC gets a TCP connection
// dialed beside it (cheaper per byte in js-libp2p); control traffic keeps QUIC.
import t from 'tap'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { connectionTo } from '../../p2p/dialer.js'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../quic/transports.js'

async function node (): Promise<Libp2p> {
  return await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
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
  const c = await connectionTo(a, b.peerId.toString(), quicOnly, 'bulk')
  t.equal(transportOf(c.remoteAddr), 'quic')
  await new Promise(resolve => setTimeout(resolve, 500))
  t.equal(a.getConnections(b.peerId).length, 1, 'still one connection')
})
