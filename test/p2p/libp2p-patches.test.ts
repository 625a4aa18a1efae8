// The behaviour our patches to libp2p packages (patches/, applied by
// patch-package on install) must keep. Without the patch these fail.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
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

t.test('libp2p-quic: reads grow past 4 KiB while a stream is busy, and every byte arrives in order', async t => {
  const a = await node()
  const b = await node()
  t.teardown(async () => { await a.stop(); await b.stop() })
  const BULK = '/bolt/test/bulk/1'
  const TOTAL = 8 * 1024 * 1024
  const received = new Promise<{ chunks: number, largest: number, hash: string }>((resolve, reject) => {
    void b.handle(BULK, (stream) => {
      void (async () => {
        const h = createHash('sha256')
        let chunks = 0
        let largest = 0
        for await (const c of stream) {
          chunks++
          largest = Math.max(largest, c.byteLength)
          for (const part of c instanceof Uint8Array ? [c] : c) h.update(part)
        }
        resolve({ chunks, largest, hash: h.digest('hex') })
      })().catch(reject)
    })
  })
  const conn = await a.dial(b.getMultiaddrs().find(m => transportOf(m) === 'quic')!)
  const s = await conn.newStream(BULK)
  const data = randomBytes(TOTAL)
  for (let off = 0; off < TOTAL; off += 256 * 1024) {
    if (!s.send(data.subarray(off, off + 256 * 1024))) await s.onDrain()
  }
  await s.close()
  const got = await received
  t.equal(got.hash, createHash('sha256').update(data).digest('hex'), 'the 8 MiB arrived intact')
  // Unpatched, every native read asks for 4 KiB: no chunk is larger, and
  // 8 MiB takes at least 2,048 of them.
  t.ok(got.largest > 4096, `a chunk larger than 4 KiB was read (largest ${got.largest} bytes)`)
  t.ok(got.chunks < TOTAL / 4096, `fewer reads than 4 KiB each would need (${got.chunks})`)
})

t.test('@libp2p/utils: onDrain() waits for the next drain, not only the first one', async t => {
  const a = await node()
  const b = await node()
  t.teardown(async () => { await a.stop(); await b.stop() })
  const SINK = '/bolt/test/sink/1'
  await b.handle(SINK, (stream) => { void (async () => { for await (const _ of stream) { /* discard */ } })().catch(() => { /* the nodes stop under it */ }) })
  const conn = await a.dial(b.getMultiaddrs().find(m => transportOf(m) === 'quic')!)
  const s = await conn.newStream(SINK)
  // A QUIC stream needs a drain after every send: the native write completes later.
  for (let i = 0; i < 5; i++) {
    t.equal(s.send(new Uint8Array(64 * 1024)), false, `send ${i} asks the writer to wait`)
    await s.onDrain()
    // Unpatched, the first drain's promise stayed resolved: from the second
    // send on, onDrain() returned while the write was still in flight.
    t.equal(s.writableNeedsDrain, false, `onDrain ${i} returned after the drain`)
  }
  await s.close()
})

t.test('libp2p-yamux: a stream whose opening frame cannot be sent fails alone; the process goes on', async t => {
  const a = await node()
  const b = await node()
  t.teardown(async () => { await a.stop(); await b.stop() })
  const uncaught: Error[] = []
  const onUncaught = (err: Error): void => { uncaught.push(err) }
  // tap reports an uncaught exception as a failure of its own; record it here instead, to assert on it.
  process.prependListener('uncaughtException', onUncaught)
  t.teardown(() => { process.removeListener('uncaughtException', onUncaught) })
  const conn = await a.dial(b.getMultiaddrs().find(m => transportOf(m) === 'tcp')!)
  // The yamux muxer under a TCP connection. Seen in an 8-agent pull: a
  // stream created as its connection began closing; the window update that
  // opens it, sent from a microtask, met the muxer's "Cannot write to a
  // stream that is closing". Here the muxer's send refuses the same way.
  const muxer = (conn as unknown as { muxer: { createStream: () => Promise<{ status: string }>, send: (d: unknown) => boolean } }).muxer
  const send = muxer.send.bind(muxer)
  muxer.send = () => { throw new Error('Cannot write to a stream that is closing') }
  const stream = await muxer.createStream()
  await new Promise(resolve => setImmediate(resolve))
  muxer.send = send
  t.same(uncaught.map(e => e.message), [], 'nothing was thrown outside the caller')
  t.equal(stream.status, 'aborted', 'the stream that could not open is aborted')
})
