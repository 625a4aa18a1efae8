// The shared per-peer link (p2p/peer-link.ts) on libp2p's own in-memory
// stream pairs (@libp2p/utils streamPair: real Stream objects over a mock
// muxer). The real users are tested over real libp2p nodes in
// test/p2p/membership/service-libp2p.test.ts and the Raft agent tests.
import t from 'tap'
import fc from 'fast-check'
import { lpStream, streamPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { PeerLinks, classifyEnd, isCleanEnd, type PeerLinksInit } from '../../p2p/peer-link.js'
import { waitOrFail } from '../helpers/harness.js'

const MAX = 1024
// AbortSignal.timeout's timers do not keep Node running; an agent has other work that does.
const keepAlive = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keepAlive) })

function named (name: string): Error { const e = new Error(name); e.name = name; return e }

/** A sender whose streams are read by `receiver`; collects frames and how each inbound stream ended. */
function pair (init: Partial<PeerLinksInit> = {}): { sender: PeerLinks, receiver: PeerLinks, frames: string[], ends: Array<'clean' | string>, opens: () => number } {
  const receiver = new PeerLinks({ open: async () => { throw new Error('receiver does not dial') }, maxFrameBytes: MAX, idleMs: 60_000, onFailure: 'drop', openTimeoutMs: 1000 })
  const frames: string[] = []
  const ends: string[] = []
  let opens = 0
  const sender = new PeerLinks({
    open: async () => {
      opens++
      const [out, inb] = await streamPair()
      receiver.read(inb, f => { frames.push(Buffer.from(f).toString()) })
        .then(() => { ends.push('clean') }, (err: unknown) => { ends.push(classifyEnd(err)) })
      return out
    },
    maxFrameBytes: MAX,
    idleMs: 60_000,
    onFailure: 'drop',
    openTimeoutMs: 1000,
    batch: 8,
    ...init
  })
  t.teardown(() => { sender.stop(); receiver.stop() })
  return { sender, receiver, frames, ends, opens: () => opens }
}

const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s))

t.test('one classification of how a stream ended', async t => {
  t.equal(classifyEnd(named('UnexpectedEOFError')), 'clean')
  t.equal(classifyEnd(named('StreamClosedError')), 'clean')
  t.ok(isCleanEnd(named('UnexpectedEOFError')))
  t.equal(classifyEnd(named('StreamResetError')), 'reset')
  t.equal(classifyEnd(named('AbortError')), 'aborted')
  t.equal(classifyEnd(named('TimeoutError')), 'aborted')
  t.equal(classifyEnd(named('InvalidDataLengthError')), 'decode')
  t.equal(classifyEnd(named('InvalidDataLengthLengthError')), 'decode')
  t.equal(classifyEnd(named('InvalidMessageLengthError')), 'decode')
  t.equal(classifyEnd(named('SwimDecodeError')), 'decode')
  t.equal(classifyEnd(new Error('boom')), 'error')
  t.equal(classifyEnd('not an error'), 'error')
  t.notOk(isCleanEnd(named('StreamResetError')))
})

t.test('drop mode: frames go in order on one stream per peer', async t => {
  const p = pair()
  for (let i = 0; i < 50; i++) t.ok(p.sender.enqueue('b', bytes(`m${i}`)))
  await waitOrFail('all frames read', () => p.frames.length === 50)
  t.same(p.frames, Array.from({ length: 50 }, (_, i) => `m${i}`))
  t.equal(p.opens(), 1, 'one stream carried them all')
  t.equal(p.sender.bytes.out, p.receiver.bytes.in)
  t.equal(p.sender.dropped, 0)
})

t.test('drop mode: the queue is bounded in frames and in bytes', async t => {
  let release: (() => void) | undefined
  const opened = new Promise<void>(resolve => { release = resolve })
  const links = new PeerLinks({
    // The dial hangs until stopped: frames wait in the queue.
    open: async (_peer, signal) => await new Promise<Stream>((_resolve, reject) => { release?.(); signal.addEventListener('abort', () => { reject(named('AbortError')) }, { once: true }) }),
    maxFrameBytes: MAX,
    idleMs: 60_000,
    onFailure: 'drop',
    openTimeoutMs: 60_000,
    maxQueuedFrames: 3,
    maxQueuedBytes: 10
  })
  t.teardown(() => { links.stop() })
  t.ok(links.enqueue('b', bytes('aaa')))
  await opened
  t.ok(links.enqueue('b', bytes('bbb')))
  t.ok(links.enqueue('b', bytes('cccc')), 'exactly at the byte bound')
  t.notOk(links.enqueue('b', bytes('d')), 'over the byte bound: dropped')
  t.equal(links.dropped, 1)
  t.ok(links.enqueue('c', bytes('1')), 'another peer has its own queue')
  t.ok(links.enqueue('c', bytes('2')))
  t.ok(links.enqueue('c', bytes('3')))
  t.notOk(links.enqueue('c', bytes('4')), 'over the frame bound: dropped')
  t.equal(links.dropped, 2)
  links.stop()
  t.notOk(links.enqueue('b', bytes('e')), 'nothing is queued once stopped')
})

t.test('drop mode: a failed dial drops what was queued, then a later frame reconnects', async t => {
  let fail = true
  const p = pair({ backoffMs: [0] })
  const links = p.sender
  // Wrap the opener: fail the first dial.
  const open = (links as unknown as { o: PeerLinksInit }).o.open
  ;(links as unknown as { o: PeerLinksInit }).o.open = async (peer, signal, hint) => {
    if (fail) { fail = false; throw new Error('dial failed') }
    return await open(peer, signal, hint)
  }
  t.ok(links.enqueue('b', bytes('lost')))
  await waitOrFail('the queued frame dropped', () => links.dropped === 1)
  t.ok(links.enqueue('b', bytes('kept')))
  await waitOrFail('the later frame read', () => p.frames.length === 1)
  t.same(p.frames, ['kept'])
})

t.test('an idle link is closed cleanly; the next frame opens a new one', async t => {
  const p = pair({ idleMs: 20 })
  t.ok(p.sender.enqueue('b', bytes('one')))
  await waitOrFail('the receiver saw the idle link end cleanly', () => p.ends.length === 1)
  t.same(p.ends, ['clean'])
  t.same(p.frames, ['one'])
  t.ok(p.sender.enqueue('b', bytes('two')))
  await waitOrFail('second frame read', () => p.frames.length === 2)
  t.equal(p.opens(), 2, 'a new stream after the idle close')
})

t.test('fresh-stream mode: each frame resolves; a link is reused; a failed dial rejects', async t => {
  const p = pair({ onFailure: 'fresh-stream', writeTimeoutMs: 5000 })
  await p.sender.send('b', bytes('x'))
  await p.sender.send('b', bytes('y'))
  await Promise.all([p.sender.send('b', bytes('z1')), p.sender.send('b', bytes('z2'))])
  await waitOrFail('all read', () => p.frames.length === 4)
  t.same(p.frames, ['x', 'y', 'z1', 'z2'])
  t.equal(p.opens(), 1, 'later frames reuse the first stream')
  const failing = new PeerLinks({ open: async () => { throw new Error('no route') }, maxFrameBytes: MAX, idleMs: 1000, onFailure: 'fresh-stream', openTimeoutMs: 1000 })
  await t.rejects(failing.send('b', bytes('x')), /no route/)
  failing.stop(new Error('stopped here'))
  await t.rejects(failing.send('b', bytes('x')), /stopped here/)
})

t.test('fresh-stream mode: a link reset under it is replaced by a new stream', async t => {
  const inbound: Stream[] = []
  let opens = 0
  const receiver = new PeerLinks({ open: async () => { throw new Error('unused') }, maxFrameBytes: MAX, idleMs: 60_000, onFailure: 'drop', openTimeoutMs: 1000 })
  const frames: string[] = []
  const sender = new PeerLinks({
    open: async () => {
      opens++
      const [out, inb] = await streamPair()
      inbound.push(inb)
      receiver.read(inb, f => { frames.push(Buffer.from(f).toString()) }).catch(() => {})
      return out
    },
    maxFrameBytes: MAX,
    idleMs: 60_000,
    onFailure: 'fresh-stream',
    openTimeoutMs: 1000,
    writeTimeoutMs: 1000
  })
  t.teardown(() => { sender.stop(); receiver.stop() })
  await sender.send('b', bytes('before'))
  inbound[0]?.abort(new Error('receiver reset it'))
  await waitOrFail('sends go through again', async () => { await sender.send('b', bytes('after')).catch(() => {}); return frames.includes('after') })
  t.ok(opens >= 2, `a new stream replaced the reset one (${opens} opened)`)
})

t.test('inbound: an oversized frame ends the stream as a decode error', async t => {
  const receiver = new PeerLinks({ open: async () => { throw new Error('unused') }, maxFrameBytes: MAX, idleMs: 1000, onFailure: 'drop', openTimeoutMs: 1000 })
  t.teardown(() => { receiver.stop() })
  const [out, inb] = await streamPair()
  const got: number[] = []
  const reading = receiver.read(inb, f => { got.push(f.byteLength) })
  const lp = lpStream(out)
  await lp.write(new Uint8Array(MAX))
  await lp.write(new Uint8Array(MAX + 1))
  const err = await reading.then(() => undefined, (e: unknown) => e)
  t.equal(classifyEnd(err), 'decode', `ended by ${String(err)}`)
  t.same(got, [MAX], 'the frame at the bound was delivered, the one over it not')
})

t.test('inbound: a silent sender is cut at the idle timeout; a reset is not a clean end', async t => {
  const receiver = new PeerLinks({ open: async () => { throw new Error('unused') }, maxFrameBytes: MAX, idleMs: 1000, onFailure: 'drop', openTimeoutMs: 1000 })
  t.teardown(() => { receiver.stop() })
  const [out, inb] = await streamPair()
  t.teardown(() => { out.abort(new Error('test over')) })
  const err = await receiver.read(inb, () => {}, { idleMs: 20 }).then(() => undefined, (e: unknown) => e)
  t.equal(classifyEnd(err), 'aborted', `ended by ${String(err)}`)
  const [out2, inb2] = await streamPair()
  const reading = receiver.read(inb2, () => {})
  out2.abort(new Error('peer gone'))
  const err2 = await reading.then(() => undefined, (e: unknown) => e)
  t.ok(err2 !== undefined && !isCleanEnd(err2), `a reset rejects (${String(err2)})`)
})

t.test('fuzz: arbitrary bytes on an inbound stream never hang the reader and never exceed the bound', async t => {
  const receiver = new PeerLinks({ open: async () => { throw new Error('unused') }, maxFrameBytes: 64, idleMs: 1000, onFailure: 'drop', openTimeoutMs: 1000 })
  t.teardown(() => { receiver.stop() })
  await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (raw) => {
    const [out, inb] = await streamPair()
    const sizes: number[] = []
    const reading = receiver.read(inb, f => { sizes.push(f.byteLength) }, { idleMs: 5000 })
    if (raw.byteLength > 0) out.send(raw)
    await out.close()
    const err = await reading.then(() => undefined, (e: unknown) => e)
    if (err !== undefined && classifyEnd(err) !== 'decode' && classifyEnd(err) !== 'clean') throw new Error(`unexpected end ${String(err)}`)
    if (sizes.some(n => n > 64)) throw new Error('a frame over the bound was delivered')
  }), { numRuns: 100 })
  await fc.assert(fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), async (frames) => {
    const [out, inb] = await streamPair()
    const got: Uint8Array[] = []
    const reading = receiver.read(inb, f => { got.push(f.slice()) })
    const lp = lpStream(out)
    for (const f of frames) await lp.write(f)
    await out.close()
    await reading
    if (got.length !== frames.length || got.some((g, i) => Buffer.compare(g, frames[i] as Uint8Array) !== 0)) throw new Error('frames changed on the way')
  }), { numRuns: 100 })
  t.pass('fuzzed')
})
