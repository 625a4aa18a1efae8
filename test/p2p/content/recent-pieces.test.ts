import t from 'tap'
import { RecentPieces } from '../../../p2p/content/recent-pieces.js'
import { PieceBuffers, type PieceBuffer } from '../../../p2p/content/piece-buffers.js'

const D = 'sha256:' + 'a'.repeat(64)
const E = 'sha256:' + 'b'.repeat(64)

/** A pooled piece of `n` bytes of `fill`; the test's own reference is released at once, so the cache's is the only one. */
function putPiece (pool: PieceBuffers, r: RecentPieces, digest: string, pieceSize: number, index: number, n: number, fill: number): PieceBuffer {
  const p = pool.take(n, pieceSize)
  p.bytes.fill(fill)
  r.put(digest, pieceSize, index, p)
  p.release()
  return p
}

/** The bytes of a cached piece, its reference released; undefined when not cached. */
function bytesOf (r: RecentPieces, digest: string, pieceSize: number, index: number): number[] | undefined {
  const p = r.get(digest, pieceSize, index)
  if (p === undefined) return undefined
  const bytes = [...p.bytes]
  p.release()
  return bytes
}

t.test('keeps pieces within its budget, dropping the least recently used first', async t => {
  const pool = new PieceBuffers()
  const r = new RecentPieces(300)
  putPiece(pool, r, D, 100, 0, 100, 0)
  const one = putPiece(pool, r, D, 100, 1, 100, 1)
  putPiece(pool, r, D, 100, 2, 100, 2)
  t.equal(r.heldBytes, 300)
  t.equal(pool.spareCount(), 0, 'the cache holds every buffer')
  t.ok(bytesOf(r, D, 100, 0) !== undefined, 'piece 0 used: now the most recent')
  putPiece(pool, r, D, 100, 3, 100, 3)
  t.equal(r.get(D, 100, 1), undefined, 'piece 1 was the least recently used')
  t.ok(one.released, "the dropped piece's buffer went back to the pool")
  t.equal(pool.spareCount(), 1, '…and waits there for the next piece')
  t.equal(pool.made, 4, 'piece 3 was taken before piece 1 was dropped')
  t.same(bytesOf(r, D, 100, 0), Array(100).fill(0))
  t.same(bytesOf(r, D, 100, 3), Array(100).fill(3))
  t.equal(r.heldBytes, 300)
  t.equal(r.size, 3)
})

t.test('a piece held by a reader outlives its eviction; its buffer goes back on the last release', async t => {
  const pool = new PieceBuffers()
  const r = new RecentPieces(100)
  putPiece(pool, r, D, 100, 0, 100, 7)
  const reading = r.get(D, 100, 0)
  if (reading === undefined) throw new Error('not cached')
  putPiece(pool, r, D, 100, 1, 100, 8)
  t.equal(r.get(D, 100, 0), undefined, 'evicted')
  t.notOk(reading.released, 'still held by its reader')
  t.same([...reading.bytes], Array(100).fill(7), 'its bytes unchanged: piece 1 got a new buffer')
  t.equal(pool.made, 2)
  reading.release()
  t.ok(reading.released)
  t.equal(pool.spareCount(), 1, 'back in the pool')
})

t.test('a key is digest, piece size and index; putting it again replaces it', async t => {
  const pool = new PieceBuffers()
  const r = new RecentPieces(1000)
  const first = putPiece(pool, r, D, 100, 0, 100, 1)
  t.equal(r.get(D, 200, 0), undefined, 'other piece size')
  t.equal(r.get(E, 100, 0), undefined, 'other digest')
  putPiece(pool, r, D, 100, 0, 50, 2)
  t.ok(first.released, 'the replaced piece was released')
  t.equal(r.heldBytes, 50)
  t.same(bytesOf(r, D, 100, 0), Array(50).fill(2))
  t.equal(r.hits, 1)
  t.equal(r.misses, 2)
  const kept = r.get(D, 100, 0, 'mirror')
  kept?.release()
  t.equal(r.get(D, 100, 1, 'mirror'), undefined)
  t.same(r.counts, { peers: { hits: 1, misses: 2 }, mirror: { hits: 1, misses: 1 } }, 'lookups are counted by reader')
  t.equal(r.hits, 2, 'hits of all readers')
  t.equal(r.misses, 3, 'misses of all readers')
})

t.test('drop forgets one digest; a budget of 0 keeps nothing', async t => {
  const pool = new PieceBuffers()
  const r = new RecentPieces(1000)
  const d = putPiece(pool, r, D, 64, 0, 50, 1)
  putPiece(pool, r, E, 64, 0, 64, 3)
  t.equal(r.heldBytes, 114)
  r.drop(D)
  t.equal(r.get(D, 64, 0), undefined)
  t.ok(d.released)
  t.ok(bytesOf(r, E, 64, 0) !== undefined)
  t.equal(r.heldBytes, 64)
  const none = new RecentPieces(0)
  t.ok(putPiece(pool, none, D, 64, 0, 64, 1).released, 'not kept, not held')
  t.equal(none.size, 0)
  const small = new RecentPieces(10)
  putPiece(pool, small, D, 64, 0, 64, 1)
  t.equal(small.size, 0, 'a piece larger than the budget is not kept')
})

t.test('pieces not put or served for the TTL are dropped; expire(0) drops all', async t => {
  let now = 1000
  const pool = new PieceBuffers()
  const r = new RecentPieces(1000, 30_000, () => now)
  const zero = putPiece(pool, r, D, 10, 0, 10, 0)
  now += 20_000
  putPiece(pool, r, D, 10, 1, 10, 1)
  now += 5_000
  t.ok(bytesOf(r, D, 10, 0) !== undefined, 'piece 0 served: its clock restarts')
  now += 29_000
  r.expire()
  t.equal(r.get(D, 10, 1), undefined, 'piece 1: 34 s unused')
  t.ok(bytesOf(r, D, 10, 0) !== undefined, 'piece 0: 29 s unused')
  t.equal(r.heldBytes, 10)
  r.expire(0)
  t.equal(r.size, 0)
  t.equal(r.heldBytes, 0)
  t.ok(zero.released)
  t.equal(pool.spareCount(), 2, 'both buffers back')
})
