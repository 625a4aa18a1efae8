import t from 'tap'
import { Uint8ArrayList } from 'uint8arraylist'
import { RecentPieces } from '../../../p2p/content/recent-pieces.js'

const D = 'sha256:' + 'a'.repeat(64)
const E = 'sha256:' + 'b'.repeat(64)
const piece = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

t.test('keeps pieces within its budget, dropping the least recently used first', async t => {
  const r = new RecentPieces(300)
  r.put(D, 100, 0, piece(100, 0))
  r.put(D, 100, 1, piece(100, 1))
  r.put(D, 100, 2, piece(100, 2))
  t.equal(r.heldBytes, 300)
  t.ok(r.get(D, 100, 0) !== undefined, 'piece 0 used: now the most recent')
  r.put(D, 100, 3, piece(100, 3))
  t.equal(r.get(D, 100, 1), undefined, 'piece 1 was the least recently used')
  t.same(r.get(D, 100, 0), piece(100, 0))
  t.same(r.get(D, 100, 3), piece(100, 3))
  t.equal(r.heldBytes, 300)
  t.equal(r.size, 3)
})

t.test('a key is digest, piece size and index; putting it again replaces it', async t => {
  const r = new RecentPieces(1000)
  r.put(D, 100, 0, piece(100, 1))
  t.equal(r.get(D, 200, 0), undefined, 'other piece size')
  t.equal(r.get(E, 100, 0), undefined, 'other digest')
  r.put(D, 100, 0, piece(50, 2))
  t.equal(r.heldBytes, 50)
  t.same(r.get(D, 100, 0), piece(50, 2))
  t.equal(r.hits, 1)
  t.equal(r.misses, 2)
})

t.test('chunk lists are kept as they are; drop forgets one digest; a budget of 0 keeps nothing', async t => {
  const r = new RecentPieces(1000)
  const list = new Uint8ArrayList(piece(30, 1), piece(20, 2))
  r.put(D, 64, 0, list)
  r.put(E, 64, 0, piece(64, 3))
  t.equal(r.get(D, 64, 0), list, 'the same list, not a copy')
  t.equal(r.heldBytes, 114)
  r.drop(D)
  t.equal(r.get(D, 64, 0), undefined)
  t.ok(r.get(E, 64, 0) !== undefined)
  t.equal(r.heldBytes, 64)
  const none = new RecentPieces(0)
  none.put(D, 64, 0, piece(64, 1))
  t.equal(none.size, 0)
  const small = new RecentPieces(10)
  small.put(D, 64, 0, piece(64, 1))
  t.equal(small.size, 0, 'a piece larger than the budget is not kept')
})

t.test('pieces not put or served for the TTL are dropped; expire(0) drops all', async t => {
  let now = 1000
  const r = new RecentPieces(1000, 30_000, () => now)
  r.put(D, 10, 0, piece(10, 0))
  now += 20_000
  r.put(D, 10, 1, piece(10, 1))
  now += 5_000
  t.ok(r.get(D, 10, 0) !== undefined, 'piece 0 served: its clock restarts')
  now += 29_000
  r.expire()
  t.equal(r.get(D, 10, 1), undefined, 'piece 1: 34 s unused')
  t.ok(r.get(D, 10, 0) !== undefined, 'piece 0: 29 s unused')
  t.equal(r.heldBytes, 10)
  r.expire(0)
  t.equal(r.size, 0)
  t.equal(r.heldBytes, 0)
})
