// The DNS server's UDP threads: under load a thread joins the event loop's
// socket on the same port (SO_REUSEPORT); every socket of a client gets
// answers with its own ids, a catalog change reaches the thread's answers,
// and no second server (another agent) can take the port while it serves.
import t from 'tap'
import { createSocket, type Socket } from 'node:dgram'
import dnsPacket from 'dns-packet'
import { DnsListenError, DnsServer, WORKER_START_QUERIES } from '../../agent/services/dns-server.js'
import type { CatalogEntry } from '../../agent/state/services.js'
import { waitOrFail } from '../helpers/harness.js'

const started: string[] = []
const log = { info: (_o: unknown, msg: string) => { started.push(msg) }, warn: () => {}, debug: () => {} } as unknown as import('../../agent/logger.js').Logger

async function socket (): Promise<Socket> {
  const s = createSocket('udp4')
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', resolve))
  return s
}

/** The A records answered to one query with this id from this socket (asked again every 200 ms: UDP may drop). */
async function ask (sock: Socket, port: number, id: number): Promise<string[]> {
  return await new Promise(resolve => {
    const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name: 'web.service.bolt' }] })
    const again = setInterval(() => { sock.send(q, port, '127.0.0.1') }, 200)
    const onMsg = (m: Buffer): void => {
      if (m.readUInt16BE(0) !== id) return
      clearInterval(again)
      sock.off('message', onMsg)
      resolve((dnsPacket.decode(m).answers ?? []).map(a => String((a as { data: unknown }).data)))
    }
    sock.on('message', onMsg)
    sock.send(q, port, '127.0.0.1')
  })
}

t.test('a busy server answers from a UDP thread too, and the thread sees catalog changes', async t => {
  let entries: CatalogEntry[] = [{ service: 'web', instance: 'web', node: 'n1', generation: 1, address: '10.1.1.1', ports: [{ host: 80, container: 80, proto: 'tcp' }], health: 'healthy' }]
  let version = 1
  const s = new DnsServer({ listen: '127.0.0.1:0', upstreams: [], lookup: n => n === 'web' ? entries : [], version: () => version, snapshot: () => [['web', entries]], udpWorkers: 1, log })
  await s.start()
  t.teardown(async () => { await s.stop() })
  const port = s.address!.port
  const socks = await Promise.all(Array.from({ length: 16 }, socket))
  t.teardown(() => { for (const k of socks) k.close() })

  // Load: queries in flight on every socket until the thread has started.
  let id = 1
  await waitOrFail('the UDP thread starts under load', async () => {
    await Promise.all(socks.map(async k => { for (let i = 0; i < 8; i++) await ask(k, port, id++ & 0xffff) }))
    return started.includes('dns: a UDP thread serves')
  }, 60_000, 1)
  t.ok(id > WORKER_START_QUERIES, 'started only after a burst')

  // Sixteen source ports spread over both sockets: each gets its own id back and the right address.
  for (const k of socks) t.same(await ask(k, port, 40_000), ['10.1.1.1'])
  await waitOrFail('the thread reports what it answered', () => s.threadStats.some(x => x.answered > 0), 10_000)
  entries = [{ ...entries[0]!, address: '10.1.1.2' }]
  version++
  await waitOrFail('every socket sees the change', async () => (await Promise.all(socks.map(async (k, i) => await ask(k, port, 50_000 + i)))).every(a => a[0] === '10.1.1.2'))
  entries = []
  version++
  await waitOrFail('a removed service is NXDOMAIN on every socket', async () => (await Promise.all(socks.map(async (k, i) => await ask(k, port, 60_000 + i)))).every(a => a.length === 0))
  await waitOrFail('the counters add up the thread\'s', () => s.stats.queries >= id - 1, 10_000)

  // Another server (another agent of the same user) cannot join the port's group.
  const other = new DnsServer({ listen: `127.0.0.1:${port}`, upstreams: [], lookup: () => [], version: () => 0, snapshot: () => [], udpWorkers: 1, log })
  await t.rejects(other.start(), DnsListenError, 'the port is taken')
  await other.stop()
})
