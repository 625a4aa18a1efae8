// Batched socket writes on TCP connections: the same bytes in the same
// order, backpressure kept, and a node that batches talks to one running
// @libp2p/tcp as it comes (Noise and Yamux on the wire unchanged).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { Uint8ArrayList } from 'uint8arraylist'
import type { MultiaddrConnection } from '@libp2p/interface'
import { transportModules, transportOf } from '../../quic/transports.js'
import { batchSocketWrites } from '../../quic/tcp-writes.js'

async function socketPair (): Promise<{ client: Socket, server: Socket, close: () => void }> {
  const srv = createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as { port: number }).port
  const accepted = once(srv, 'connection')
  const client = connect(port, '127.0.0.1')
  await once(client, 'connect')
  const [server] = await accepted as [Socket]
  return { client, server, close: () => { client.destroy(); server.destroy(); srv.close() } }
}

t.test('a list goes out corked, whole and in order; a full buffer asks for drain', async t => {
  const { client, server, close } = await socketPair()
  t.teardown(close)
  let corks = 0
  const cork = client.cork.bind(client)
  client.cork = () => { corks++; cork() }
  const maConn = { socket: client, sendData: () => ({ sentBytes: 0, canSendMore: true }) } as unknown as MultiaddrConnection & { sendData: (d: Uint8ArrayList) => { sentBytes: number, canSendMore: boolean } }
  t.ok(batchSocketWrites(maConn), 'a TCP connection gets batched writes')
  const received: Buffer[] = []
  server.on('data', (b: Buffer) => received.push(b))

  const small = new Uint8ArrayList(Uint8Array.of(0, 5), Uint8Array.of(1, 2, 3), Uint8Array.of(4, 5))
  t.same(maConn.sendData(small), { sentBytes: 7, canSendMore: true })
  t.equal(corks, 1, 'one cork for the whole list')

  // More than the socket's high-water mark: everything is taken, and the
  // caller is told to wait for 'drain'.
  const big = randomBytes(4 * client.writableHighWaterMark)
  const list = new Uint8ArrayList(big.subarray(0, 10), big.subarray(10, 70000), big.subarray(70000))
  const r = maConn.sendData(list)
  t.equal(r.sentBytes, big.byteLength, 'the whole list is taken')
  t.equal(r.canSendMore, false, 'the caller waits for drain')
  await once(client, 'drain')
  const want = Buffer.concat([Buffer.from([0, 5, 1, 2, 3, 4, 5]), big])
  while (Buffer.concat(received).byteLength < want.byteLength) await once(server, 'data')
  t.ok(Buffer.concat(received).equals(want), 'the peer reads the same bytes in the same order')
})

t.test('connections that are not TCP sockets are left alone', async t => {
  const sendData = (): { sentBytes: number, canSendMore: boolean } => ({ sentBytes: 0, canSendMore: true })
  const maConn = { sendData } as unknown as MultiaddrConnection & { sendData: unknown }
  t.notOk(batchSocketWrites(maConn))
  t.equal(maConn.sendData, sendData)
})

t.test('bulk both ways between a batching node and a stock @libp2p/tcp node', async t => {
  const ours = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, ...transportModules() })
  const stock = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, ...transportModules(), transports: [tcp()] })
  t.teardown(async () => { await ours.stop(); await stock.stop() })
  const payload = randomBytes(6 * 1024 * 1024 + 12345)
  const digest = createHash('sha256').update(payload).digest('hex')
  // Each side answers with the SHA-256 of what it read, after sending the payload back.
  for (const node of [ours, stock]) {
    await node.handle('/bolt/test/bulk/1', async (stream) => {
      const h = createHash('sha256')
      let n = 0
      for await (const chunk of stream) {
        for (const b of chunk instanceof Uint8Array ? [chunk] : chunk) { h.update(b); n += b.byteLength }
        if (n >= payload.byteLength) break
      }
      for (let off = 0; off < payload.byteLength; off += 1024 * 1024) {
        if (!stream.send(payload.subarray(off, off + 1024 * 1024))) await stream.onDrain()
      }
      stream.send(new TextEncoder().encode(h.digest('hex')))
      await stream.close()
    })
  }
  for (const [from, to, name] of [[ours, stock, 'batching → stock'], [stock, ours, 'stock → batching']] as const) {
    const addr = to.getMultiaddrs().find(m => transportOf(m) === 'tcp')
    const stream = await from.dialProtocol(addr!, '/bolt/test/bulk/1')
    for (let off = 0; off < payload.byteLength; off += 1024 * 1024) {
      if (!stream.send(payload.subarray(off, off + 1024 * 1024))) await stream.onDrain()
    }
    const back = new Uint8ArrayList()
    for await (const chunk of stream) for (const b of chunk instanceof Uint8Array ? [chunk] : chunk) back.append(b)
    t.equal(back.byteLength, payload.byteLength + 64, `${name}: payload and digest came back`)
    t.equal(createHash('sha256').update(back.subarray(0, payload.byteLength)).digest('hex'), digest, `${name}: the payload is intact`)
    t.equal(new TextDecoder().decode(back.subarray(payload.byteLength)), digest, `${name}: the far side read it intact`)
    await stream.close()
  }
})
