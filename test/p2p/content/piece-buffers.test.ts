import t from 'tap'
import { PieceBuffer, PieceBuffers } from '../../../p2p/content/piece-buffers.js'

t.test('a buffer goes back to its pool on the last release and is taken again', async t => {
  const pool = new PieceBuffers(2)
  const a = pool.take(100, 128)
  t.equal(a.byteLength, 100, 'viewed as the piece')
  a.bytes.fill(1)
  a.retain()
  a.release()
  t.equal(pool.spareCount(), 0, 'one holder left')
  a.release()
  t.ok(a.released)
  t.equal(pool.spareCount(), 1)
  const b = pool.take(128)
  t.equal(pool.made, 1, 'the same buffer, taken again')
  t.same([...b.bytes.subarray(0, 3)], [1, 1, 1], 'not cleared: every byte of a piece is written before it is read')
  t.throws(() => { a.retain() }, /after its last release/)
  t.throws(() => { a.release() }, /more often than retained/)
  t.throws(() => pool.take(129, 128), RangeError)
})

t.test('spares are bounded per size, and let go once the pool was idle for a while', async t => {
  let now = 0
  const pool = new PieceBuffers(2, () => now)
  const held = [pool.take(64), pool.take(64), pool.take(64), pool.take(32)]
  for (const p of held) p.release()
  t.equal(pool.spareCount(), 3, 'two of 64 bytes, one of 32')
  now += 5_000
  pool.trim(10_000)
  t.equal(pool.spareCount(), 3, 'taken from 5 s ago: kept')
  now += 5_000
  pool.trim(10_000)
  t.equal(pool.spareCount(), 0, 'idle for 10 s: let go')
  pool.take(64).release()
  pool.trim()
  t.equal(pool.spareCount(), 0, 'trim() lets go at once')
})

t.test('unpooled bytes count holders and belong to nobody', async t => {
  const bytes = new Uint8Array([1, 2, 3])
  const p = PieceBuffer.unpooled(bytes)
  t.equal(p.bytes, bytes)
  p.retain().release()
  p.release()
  t.ok(p.released)
})
