// Lent socket reads: the Noise framing decoder never keeps a chunk it was
// lent (the chunk is overwritten after every call here, as the shared read
// buffer is), yields the same messages however the bytes are cut, and
// libp2p nodes that read into the one shared buffer move bytes intact
// over several connections at once, both ways, next to a stock node.
import t from 'tap'
import fc from 'fast-check'
import { createHash, randomBytes } from 'node:crypto'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { Uint8ArrayList } from 'uint8arraylist'
import { lentReadStats, NoiseMessageDecoder } from '../../quic/tcp-reads.js'
import { transportModules, transportOf } from '../../quic/transports.js'

/** Noise framing: 2-byte big-endian length, then the message. */
function frame (messages: Uint8Array[]): Uint8Array {
  const out = new Uint8ArrayList()
  for (const m of messages) out.append(Uint8Array.of(m.byteLength >> 8, m.byteLength & 0xff), m)
  return out.subarray()
}

/** Feeds `wire` cut at `cuts` through one lent buffer, scribbled over after each call; returns copies of what was yielded. */
function decodeLent (decoder: NoiseMessageDecoder, wire: Uint8Array, cuts: number[], asList = false): Uint8Array[] {
  const lent = new Uint8Array(wire.byteLength + 1)
  const got: Uint8Array[] = []
  const bounds = [...new Set([0, ...cuts.map(c => c % (wire.byteLength + 1)), wire.byteLength])].sort((a, b) => a - b)
  for (let i = 1; i < bounds.length; i++) {
    const part = wire.subarray(bounds[i - 1], bounds[i])
    lent.set(part)
    const view = lent.subarray(0, part.byteLength)
    for (const msg of decoder.decode(asList ? new Uint8ArrayList(view.subarray(0, 1), view.subarray(1)) : view)) got.push(msg.slice())
    lent.fill(0xee) // the next read lands in the same memory
  }
  return got
}

t.test('messages come out whole and in order, however the reads cut them', async t => {
  fc.assert(fc.property(
    fc.array(fc.uint8Array({ minLength: 1, maxLength: 3000 }), { minLength: 1, maxLength: 12 }),
    fc.array(fc.nat(), { maxLength: 20 }),
    fc.boolean(),
    (messages, cuts, asList) => {
      const got = decodeLent(new NoiseMessageDecoder(), frame(messages), cuts, asList)
      t.same(got.map(m => Buffer.from(m).toString('hex')), messages.map(m => Buffer.from(m).toString('hex')))
      return true
    }), { numRuns: 300 })
})

t.test('full-size messages split across reads, and empty messages', async t => {
  const big = [randomBytes(65535), randomBytes(65535), new Uint8Array(0), randomBytes(1), randomBytes(40000)]
  const decoder = new NoiseMessageDecoder()
  const got = decodeLent(decoder, frame(big), [1, 65536, 65538, 100000, 131072, 131073])
  t.same(got.map(m => Buffer.from(m).toString('hex')), big.filter(m => m.byteLength > 0).map(m => Buffer.from(m).toString('hex')), 'empty messages are skipped, as the library does')
  t.equal(decoder.pendingBytes, 0)
})

t.test('bytes the replaced decoder held are read first', async t => {
  const messages = [randomBytes(70), randomBytes(3000)]
  const wire = frame(messages)
  const decoder = new NoiseMessageDecoder(new Uint8ArrayList(wire.slice(0, 50)))
  const got = decodeLent(decoder, wire.subarray(50), [])
  t.same(got.map(m => Buffer.from(m).toString('hex')), messages.map(m => Buffer.from(m).toString('hex')))
})

t.test('a decode started from inside a receiver keeps the order', async t => {
  const messages = [randomBytes(10), randomBytes(20), randomBytes(30), randomBytes(40)]
  const wire = frame(messages)
  const first = wire.slice(0, 2 + 10 + 2 + 20)
  const second = wire.slice(first.byteLength)
  const decoder = new NoiseMessageDecoder()
  const got: Uint8Array[] = []
  let nested = false
  for (const msg of decoder.decode(first)) {
    got.push(msg.slice())
    if (!nested) {
      nested = true
      // Re-entered: nothing comes out here; the running decode reads it after its own bytes.
      t.same([...decoder.decode(second)], [])
      second.fill(0) // lent: may change once the call returned
    }
  }
  t.same(got.map(m => Buffer.from(m).toString('hex')), messages.map(m => Buffer.from(m).toString('hex')))
})

t.test('bulk over several connections at once reads into the shared buffer and arrives intact', async t => {
  const nodes: Libp2p[] = []
  for (let i = 0; i < 3; i++) nodes.push(await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, ...transportModules() }))
  const stock = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, ...transportModules(), transports: [tcp()] })
  nodes.push(stock)
  t.teardown(async () => { await Promise.all(nodes.map(async n => { await n.stop() })) })
  const payload = randomBytes(3 * 1024 * 1024 + 4321)
  const digest = createHash('sha256').update(payload).digest('hex')
  // Each handler reads the request (a size), then sends that many bytes of the payload in uneven sends.
  for (const node of nodes) {
    await node.handle('/bolt/test/lent/1', async (stream) => {
      let size = -1
      for await (const chunk of stream) { size = new DataView(chunk.subarray().buffer, chunk.subarray().byteOffset).getUint32(0); break }
      let off = 0
      for (let i = 1; off < size; i++) {
        const n = Math.min(size - off, (i * 7919) % 200_000 + 1)
        if (!stream.send(payload.subarray(off, off + n))) await stream.onDrain()
        off += n
      }
      await stream.close()
    })
  }
  const lentBefore = lentReadStats.lent
  // Every ordered pair at once: each node dials the others (dialed sockets lend, accepted ones copy).
  const pulls: Array<Promise<void>> = []
  for (const from of nodes) {
    for (const to of nodes) {
      if (from === to) continue
      pulls.push((async () => {
        const addr = to.getMultiaddrs().find(m => transportOf(m) === 'tcp')
        const stream = await from.dialProtocol(addr!, '/bolt/test/lent/1')
        const req = new Uint8Array(4)
        new DataView(req.buffer).setUint32(0, payload.byteLength)
        stream.send(req)
        const h = createHash('sha256')
        let n = 0
        for await (const chunk of stream) {
          for (const b of chunk instanceof Uint8Array ? [chunk] : chunk) { h.update(b); n += b.byteLength }
          // A slow reader now and then: the stream's window fills and the sender waits.
          if (n % 5 === 0) await new Promise(resolve => setImmediate(resolve))
        }
        t.equal(n, payload.byteLength, `${from.peerId.toString().slice(-6)} → ${to.peerId.toString().slice(-6)}: all bytes`)
        t.equal(h.digest('hex'), digest, 'intact')
      })())
    }
  }
  await Promise.all(pulls)
  t.ok(lentReadStats.lent - lentBefore > 3 * payload.byteLength, `dialed connections read into the shared buffer (${lentReadStats.lent - lentBefore} bytes lent)`)
})
