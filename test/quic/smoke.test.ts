import t from 'tap'
import { createLibp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { lpStream } from '@libp2p/utils'
import { transportModules, EPHEMERAL_LISTEN, transportOf } from '../../quic/transports.js'

t.test('two libp2p nodes talk over QUIC and over TCP', async t => {
  const mk = async () => await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  const a = await mk()
  const b = await mk()
  t.teardown(async () => { await a.stop(); await b.stop() })
  await b.handle('/echo/1', async (stream) => {
    const lp = lpStream(stream)
    const msg = await lp.read()
    await lp.write(msg)
    await stream.close()
  })
  for (const kind of ['quic', 'tcp'] as const) {
    const addr = b.getMultiaddrs().find(m => transportOf(m) === kind)
    t.ok(addr, `b listens on ${kind}`)
    const stream = await a.dialProtocol(addr!, '/echo/1')
    const lp = lpStream(stream)
    await lp.write(new TextEncoder().encode(`hi ${kind}`))
    const back = await lp.read()
    t.equal(new TextDecoder().decode(back.subarray()), `hi ${kind}`)
    await stream.close()
    await a.hangUp(b.peerId)
  }
})
