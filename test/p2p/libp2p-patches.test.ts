// The behaviour our patches to libp2p packages (patches/, applied by
// patch-package on install) must keep. Without the patch these fail.
import t from 'tap'
import { createLibp2p, type Libp2p } from 'libp2p'
import { EPHEMERAL_LISTEN, transportModules, transportOf, type TransportName } from '../../quic/transports.js'

const PROTOCOL = '/bolt/test/echo/1'

async function node (): Promise<Libp2p> {
  return await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules() })
}

/** Counts peer-store merges that record `protocol` for any peer. */
function countMerges (n: Libp2p, protocol: string): () => number {
  let count = 0
  const merge = n.peerStore.merge.bind(n.peerStore)
  n.peerStore.merge = async (peer, data, options) => {
    if (data.protocols?.includes(protocol) === true) count++
    return await merge(peer, data, options)
  }
  return () => count
}

for (const kind of ['tcp', 'quic'] as TransportName[]) {
  t.test(`libp2p: a protocol is merged into the peer store once per connection, not per stream (${kind})`, async t => {
    const a = await node()
    const b = await node()
    t.teardown(async () => { await a.stop(); await b.stop() })
    let served = 0
    // One byte in, the same byte back, then both sides close.
    await b.handle(PROTOCOL, (stream) => {
      void (async () => {
        for await (const chunk of stream) {
          stream.send(chunk)
          served++
          break
        }
        await stream.close()
      })()
    })
    const outbound = countMerges(a, PROTOCOL)
    const inbound = countMerges(b, PROTOCOL)
    const conn = await a.dial(b.getMultiaddrs().find(m => transportOf(m) === kind)!)
    const STREAMS = 12
    for (let i = 0; i < STREAMS; i++) {
      const s = await conn.newStream(PROTOCOL)
      s.send(new Uint8Array([i]))
      const got: number[] = []
      for await (const c of s) {
        got.push(...c.subarray())
        break
      }
      await s.close()
      t.same(got, [i], `stream ${i} echoed its byte`)
    }
    t.equal(served, STREAMS)
    t.equal(outbound(), 1, 'the dialer recorded the protocol once')
    t.equal(inbound(), 1, 'the listener recorded the protocol once')
    t.ok((await a.peerStore.get(b.peerId)).protocols.includes(PROTOCOL), 'the peer store knows the protocol')
  })
}
