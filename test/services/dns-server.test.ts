// The DNS server's sockets: garbage over UDP and TCP never stops it, cached
// answers carry each query's own id, and a catalog change is seen at once.
import t from 'tap'
import fc from 'fast-check'
import { createSocket } from 'node:dgram'
import { connect } from 'node:net'
import dnsPacket from 'dns-packet'
import { DnsServer, parseHostPort, parseResolvConf } from '../../agent/services/dns-server.js'
import type { CatalogEntry } from '../../agent/state/services.js'

const log = { info: () => {}, warn: () => {}, debug: () => {} } as unknown as import('../../agent/logger.js').Logger

t.test('UDP and TCP: answers with the query id, survives garbage', async t => {
  let entries: CatalogEntry[] = [{ service: 'web', instance: 'web', node: 'n1', generation: 1, address: '10.1.1.1', ports: [{ host: 80, container: 80, proto: 'tcp' }], health: 'healthy' }]
  let version = 1
  const s = new DnsServer({ listen: '127.0.0.1:0', upstreams: [], lookup: n => n === 'web' ? entries : [], version: () => version, log })
  await s.start()
  t.teardown(async () => { await s.stop() })
  const port = s.address!.port
  const sock = createSocket('udp4')
  await new Promise<void>(resolve => sock.bind(0, '127.0.0.1', resolve))
  t.teardown(() => { sock.close() })
  // UDP may drop under a burst (the socket's buffer): ask again until answered, as resolvers do.
  const ask = async (id: number): Promise<ReturnType<typeof dnsPacket.decode>> => await new Promise(resolve => {
    const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web.service.bolt' }] })
    const again = setInterval(() => { sock.send(q, port, '127.0.0.1') }, 300)
    const onMsg = (m: Buffer): void => { if (m.readUInt16BE(0) === id && (m[2]! & 0x80) !== 0) { clearInterval(again); sock.off('message', onMsg); resolve(dnsPacket.decode(m)) } }
    sock.on('message', onMsg)
    sock.send(q, port, '127.0.0.1')
  })
  const garbage = fc.sample(fc.uint8Array({ maxLength: 700 }), 300)
  for (const g of garbage) await new Promise<void>(resolve => { sock.send(g, port, '127.0.0.1', () => { setImmediate(resolve) }) })
  const a = await ask(11)
  const b = await ask(12)
  t.same([a.id, b.id], [11, 12], 'a cached answer carries the new query id')
  t.same(b.answers?.map(x => (x as { data: string }).data), ['10.1.1.1'])
  entries = [{ ...entries[0]!, address: '10.1.1.2' }]
  version++
  t.same((await ask(13)).answers?.map(x => (x as { data: string }).data), ['10.1.1.2'], 'a catalog change is served at once')
  t.ok(s.stats.queries > 100, `garbage was read and answered or dropped (${s.stats.queries} datagrams)`)

  // TCP: junk, then a framed query on a new connection.
  await new Promise<void>(resolve => { const c = connect({ host: '127.0.0.1', port }, () => { c.end(Buffer.from([0xff, 0xff, 1, 2, 3])) }); c.on('close', () => resolve()); c.on('error', () => resolve()) })
  const reply = await new Promise<Buffer>((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port }, () => { c.write(dnsPacket.streamEncode({ type: 'query', id: 77, questions: [{ type: 'SRV', name: 'web.service.bolt' }] })) })
    let buf = Buffer.alloc(0)
    c.on('data', (d: Buffer) => { buf = Buffer.concat([buf, d]); if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { c.destroy(); resolve(buf.subarray(2)) } })
    c.on('error', reject)
  })
  const srv = dnsPacket.decode(reply)
  t.same([srv.id, (srv.answers?.[0] as { data: { port: number } } | undefined)?.data.port], [77, 80], 'SRV over TCP')
})

t.test('resolv.conf and HOST:PORT parsing', async t => {
  t.same(parseResolvConf('# x\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nsearch lan\n'), [{ host: '10.0.0.1', port: 53 }, { host: 'fe80::1', port: 53 }])
  t.same(parseHostPort('127.0.0.1:5353', 53), { host: '127.0.0.1', port: 5353 })
  t.same(parseHostPort('[::1]:5353', 53), { host: '::1', port: 5353 })
  t.same(parseHostPort('::1', 53), { host: '::1', port: 53 })
  t.same(parseHostPort('9.9.9.9', 53), { host: '9.9.9.9', port: 53 })
})
