import t from 'tap'
import fc from 'fast-check'
import { encode } from 'cbor-x'
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, MAX_CONTROL_FRAME, MAX_HAVE_WAIT_MS, MAX_INLINE_REPLICA_BYTES, MAX_INLINE_REPLICA_TOTAL, type PieceRequest } from '../../../p2p/content/piece-messages.js'

const digest = 'sha256:' + 'ab'.repeat(32)
const typed = new Set(['InvalidMessageError', 'FrameTooLargeError'])

t.test('valid messages round-trip', async t => {
  const reqs: PieceRequest[] = [
    { t: 'have?', digest, pieceSize: 4 * 1024 * 1024 },
    { t: 'have?', digest, pieceSize: 65536, after: 3, waitMs: 1600 },
    { t: 'manifest?', digest, pieceSize: 65536 },
    { t: 'piece?', digest, pieceSize: 65536, index: 17 },
    { t: 'replicate?', owner: 'object:x', blobs: [{ digest, size: 10 }] }
  ]
  for (const r of reqs) t.same(decodeRequest(encodeRequest(r)), r)
  const have = { t: 'have' as const, digest, size: 100, pieceSize: 65536, complete: false, pulling: true, bitfield: new Uint8Array([0x80]), hashes: new Uint8Array(32) }
  const back = decodeResponse(encodeResponse(have))
  t.equal(back.t, 'have')
  t.same(back, { ...have, bitfield: Buffer.from(have.bitfield), hashes: Buffer.from(have.hashes) })
  // With the registry claims: the pieces claimed and, of those, the ones fetched right now.
  const claims = { ...have, fetching: new Uint8Array([0xc0]), fetchingNow: new Uint8Array([0x40]) }
  const back2 = decodeResponse(encodeResponse(claims))
  t.same(back2, { ...claims, bitfield: Buffer.from(claims.bitfield), hashes: Buffer.from(claims.hashes), fetching: Buffer.from(claims.fetching), fetchingNow: Buffer.from(claims.fetchingNow) }, 'claims round-trip')
})

t.test('decoders reject bad input with typed errors only (fuzz)', async t => {
  const check = (frame: Uint8Array): void => {
    for (const dec of [decodeRequest, decodeResponse]) {
      try { dec(frame) } catch (err) { if (!typed.has((err as Error).name)) throw err }
    }
  }
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), check), { numRuns: 2000, seed: 1 })
  // Structured garbage: CBOR of arbitrary JSON-ish values, and near-miss messages.
  fc.assert(fc.property(fc.jsonValue(), v => check(encode(v))), { numRuns: 1000, seed: 2 })
  fc.assert(fc.property(fc.record({ t: fc.constantFrom('have?', 'piece?', 'have', 'piece', 'err', 'x'), digest: fc.string(), pieceSize: fc.integer(), index: fc.integer(), length: fc.integer() }), v => check(encode(v))), { numRuns: 1000, seed: 3 })
  for (const hex of ['bf', '9f', 'c29ff7503e7d', 'a1', '5a000000ff']) t.throws(() => decodeRequest(Buffer.from(hex, 'hex')), { name: 'InvalidMessageError' }, `cbor ${hex} refused before cbor-x sees it`)
  t.throws(() => decodeRequest(new Uint8Array(MAX_CONTROL_FRAME + 1)), { name: 'FrameTooLargeError' })
  t.throws(() => decodeRequest(encode({ t: 'piece?', digest, pieceSize: 65536, index: -1 })), { name: 'InvalidMessageError' })
  t.throws(() => decodeRequest(encode({ t: 'have?', digest, pieceSize: 1 })), { name: 'InvalidMessageError' })
  t.throws(() => decodeRequest(encode({ t: 'have?', digest, pieceSize: 65536, after: 0, waitMs: MAX_HAVE_WAIT_MS + 1 })), { name: 'InvalidMessageError' }, 'a long poll longer than the server holds one')
  t.throws(() => decodeRequest(encode({ t: 'have?', digest, pieceSize: 65536, after: -1, waitMs: 10 })), { name: 'InvalidMessageError' })
  // Replicate requests with bytes: the bytes must be the size they claim, small, and few in all.
  fc.assert(fc.property(fc.array(fc.record({ digest: fc.constant(digest), size: fc.nat(70_000), data: fc.option(fc.uint8Array({ maxLength: 2048 }), { nil: undefined }) }, { requiredKeys: ['digest', 'size'] }), { maxLength: 8 }), blobs => check(encode({ t: 'replicate?', owner: 'object:x', blobs }))), { numRuns: 500, seed: 4 })
  const bytes = (n: number): Uint8Array => new Uint8Array(n)
  const inline = { t: 'replicate?' as const, owner: 'object:x', blobs: [{ digest, size: 3, data: bytes(3) }, { digest, size: 5 }] }
  t.same(decodeRequest(encodeRequest(inline)), { ...inline, blobs: [{ digest, size: 3, data: Buffer.from(bytes(3)) }, { digest, size: 5 }] }, 'a replicate request with bytes round-trips')
  t.throws(() => decodeRequest(encode({ t: 'replicate?', owner: 'object:x', blobs: [{ digest, size: 4, data: bytes(3) }] })), { name: 'InvalidMessageError', message: /do not match the size/ })
  const big = MAX_INLINE_REPLICA_BYTES + 1
  t.throws(() => decodeRequest(encode({ t: 'replicate?', owner: 'object:x', blobs: [{ digest, size: big, data: bytes(big) }] })), { name: 'InvalidMessageError', message: /inline replica bytes above/ })
  const many = Array.from({ length: MAX_INLINE_REPLICA_TOTAL / MAX_INLINE_REPLICA_BYTES + 1 }, () => ({ digest, size: MAX_INLINE_REPLICA_BYTES, data: bytes(MAX_INLINE_REPLICA_BYTES) }))
  t.throws(() => decodeRequest(encode({ t: 'replicate?', owner: 'object:x', blobs: many })), { name: 'InvalidMessageError', message: /in all/ })
})
