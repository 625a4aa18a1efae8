// When a served piece's buffer may go back to the pool: on a stream that is
// not sealed by Noise (QUIC), only once every slice has been written and no
// write is in flight; never while the transport may still read it.
import t from 'tap'
import type { Stream } from '@libp2p/interface'
import { PieceBuffers } from '../../../p2p/content/piece-buffers.js'
import { SEND_SLICE_BYTES, sendFrameInSlices } from '../../../p2p/content/piece-server.js'

/** A stream that behaves as a QUIC stream does: every send is a native write; drain comes when the test finishes it. */
function quicLikeStream (): { stream: Stream, sent: Uint8Array[], finishWrite: () => void, queue: (n: number) => void } {
  let finish: (() => void) | undefined
  const s = {
    writableNeedsDrain: false,
    writeBufferLength: 0,
    sent: [] as Uint8Array[],
    send (data: Uint8Array): boolean {
      s.sent.push(data)
      s.writableNeedsDrain = true
      return false
    },
    async onDrain (): Promise<void> {
      if (!s.writableNeedsDrain) return
      await new Promise<void>(resolve => { finish = resolve })
    },
    log: Object.assign(() => {}, { error: () => {}, trace: () => {} })
  }
  return {
    stream: s as unknown as Stream,
    sent: s.sent,
    finishWrite: () => { s.writableNeedsDrain = false; const f = finish; finish = undefined; f?.() },
    queue: (n: number) => { s.writeBufferLength = n }
  }
}

async function settle (): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve))
}

t.test('QUIC: the buffer goes back only after the last write finished', async t => {
  const pool = new PieceBuffers()
  const piece = pool.take(3 * SEND_SLICE_BYTES)
  const { stream, sent, finishWrite } = quicLikeStream()
  const done = sendFrameInSlices(stream, piece, new AbortController().signal, false)
  // The length prefix, then three slices: each waits for its write to finish.
  for (let writes = 0; writes < 4; writes++) {
    await settle()
    // Once the slices started, the send holds its own reference: the caller's may go.
    if (writes === 1) piece.release()
    t.equal(pool.spareCount(), 0, `not in the pool while write ${writes + 1} is in flight`)
    t.notOk(piece.released)
    finishWrite()
  }
  await done
  t.equal(sent.length, 4)
  t.ok(piece.released, 'released once every write finished')
  t.equal(pool.spareCount(), 1, 'and back in the pool for the next piece')
  t.equal(pool.take(SEND_SLICE_BYTES, 3 * SEND_SLICE_BYTES).bytes.buffer, piece.bytes.buffer, 'the next piece reuses it')
})

t.test('QUIC: bytes still queued in the stream keep the buffer out of the pool', async t => {
  const pool = new PieceBuffers()
  const piece = pool.take(SEND_SLICE_BYTES)
  const { stream, finishWrite, queue } = quicLikeStream()
  const done = sendFrameInSlices(stream, piece, new AbortController().signal, false)
  await settle(); finishWrite()
  await settle(); piece.release(); queue(100); finishWrite()
  await done
  t.notOk(piece.released, 'left to the garbage collector, never handed out again')
  t.equal(pool.spareCount(), 0)
})

t.test('QUIC: an aborted send never gives the buffer back', async t => {
  const pool = new PieceBuffers()
  const piece = pool.take(2 * SEND_SLICE_BYTES)
  const { stream, finishWrite } = quicLikeStream()
  const ac = new AbortController()
  const done = sendFrameInSlices(stream, piece, ac.signal, false)
  await settle(); finishWrite()
  await settle(); piece.release(); ac.abort(new Error('stopping')); finishWrite()
  await t.rejects(done)
  t.notOk(piece.released)
  t.equal(pool.spareCount(), 0)
})
