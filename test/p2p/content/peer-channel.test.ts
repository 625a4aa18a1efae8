// PeerChannel over a real libp2p stream, against a hand-written server: the
// deadline of the answer at the head of the line, and the caller's signal,
// each break the channel and fail every request behind it.
import t from 'tap'
import { createLibp2p, type Libp2p } from 'libp2p'
import { identify } from '@libp2p/identify'
import { lpStream } from '@libp2p/utils'
import { EPHEMERAL_LISTEN, transportModules, transportOf } from '../../../quic/transports.js'
import { ChannelClosedError, PeerChannel, RequestTimeoutError } from '../../../p2p/content/peer-channel.js'
import { decodeRequest, encodeResponse, MAX_FRAME } from '../../../p2p/content/piece-messages.js'
import { PieceBuffers } from '../../../p2p/content/piece-buffers.js'

const PROTOCOL = '/bolt-test/peer-channel/1'
const DIGEST = `sha256:${'ab'.repeat(32)}`

/** Answers `have?` with `none`, and `piece?` with a piece of `index + 1` bytes, except index 7: from there on the server reads requests and answers none. */
async function server (): Promise<Libp2p> {
  const node = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  await node.handle(PROTOCOL, async (stream) => {
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME })
    let silent = false
    try {
      for (;;) {
        const req = decodeRequest((await lp.read()).subarray())
        silent ||= req.t === 'piece?' && req.index === 7
        if (silent) continue
        if (req.t === 'have?') {
          await lp.write(encodeResponse({ t: 'none', digest: req.digest }))
        } else if (req.t === 'piece?') {
          await lp.write(encodeResponse({ t: 'piece', digest: req.digest, index: req.index, length: req.index + 1 }))
          await lp.write(new Uint8Array(req.index + 1).fill(req.index))
        }
      }
    } catch {}
  })
  return node
}

async function pair (t: { teardown: (fn: () => Promise<void>) => void }, timeoutMs: number): Promise<PeerChannel> {
  const a = await server()
  const b = await createLibp2p({ addresses: { listen: EPHEMERAL_LISTEN }, ...transportModules(), services: { identify: identify() } })
  t.teardown(async () => { await b.stop(); await a.stop() })
  const addr = a.getMultiaddrs().find(m => transportOf(m) === 'tcp')
  if (addr === undefined) throw new Error('no tcp address')
  const stream = await b.dialProtocol(addr, PROTOCOL)
  return new PeerChannel(a.peerId.toString(), stream, timeoutMs, new PieceBuffers())
}

t.test('pipelined requests are answered in order, each with its own bytes', async t => {
  const ch = await pair(t, 5000)
  const answers = await Promise.all(Array.from({ length: 200 }, async (_, i) => i % 3 === 0
    ? await ch.request({ t: 'have?', digest: DIGEST, pieceSize: 65536 })
    : await ch.request({ t: 'piece?', digest: DIGEST, pieceSize: 65536, index: i % 7 === 0 ? 8 : i % 5 })))
  for (let i = 0; i < answers.length; i++) {
    const r = answers[i]
    if (i % 3 === 0) { t.equal(r?.res.t, 'none'); continue }
    const index = i % 7 === 0 ? 8 : i % 5
    t.equal(r?.res.t === 'piece' ? r.res.index : -1, index)
    t.same([...(r?.data?.bytes ?? [])], Array(index + 1).fill(index))
    r?.data?.release()
  }
  t.notOk(ch.isBroken)
  ch.close()
})

t.test('an answer that does not come within the deadline breaks the channel and fails what waits behind it', async t => {
  const ch = await pair(t, 300)
  t.equal((await ch.request({ t: 'have?', digest: DIGEST, pieceSize: 65536 })).res.t, 'none')
  const silent = ch.request({ t: 'piece?', digest: DIGEST, pieceSize: 65536, index: 7 })
  const behind = ch.request({ t: 'have?', digest: DIGEST, pieceSize: 65536 })
  behind.catch(() => {})
  const err = await silent.then(() => undefined, (e: unknown) => e as Error)
  t.ok(err instanceof ChannelClosedError, `failed with ${String(err)}`)
  t.ok(err?.cause instanceof RequestTimeoutError, 'its cause is the deadline')
  await t.rejects(behind, ChannelClosedError)
  t.ok(ch.isBroken)
  await t.rejects(ch.request({ t: 'have?', digest: DIGEST, pieceSize: 65536 }), ChannelClosedError, 'a broken channel takes no more requests')
})

t.test("the caller's signal aborts a waiting request and breaks the channel", async t => {
  const ch = await pair(t, 30_000)
  const ac = new AbortController()
  const silent = ch.request({ t: 'piece?', digest: DIGEST, pieceSize: 65536, index: 7 }, ac.signal)
  setTimeout(() => { ac.abort(new Error('pull cancelled')) }, 100)
  const err = await silent.then(() => undefined, (e: unknown) => e as Error)
  t.ok(err instanceof ChannelClosedError, `failed with ${String(err)}`)
  t.equal((err?.cause as Error | undefined)?.message, 'pull cancelled')
  t.ok(ch.isBroken)
  const already = new AbortController()
  already.abort(new Error('gone'))
  const other = await pair(t, 30_000)
  await t.rejects(other.request({ t: 'have?', digest: DIGEST, pieceSize: 65536 }, already.signal), { message: 'gone' }, 'an aborted signal fails at once')
})
