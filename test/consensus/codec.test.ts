import t from 'tap'
import fc from 'fast-check'
import { Encoder } from 'cbor-x'
import { encodeMessage, decodeMessage, RaftDecodeError, MAX_RAFT_FRAME_BYTES, type Message, type Entry } from '../../consensus/index.js'

const id = fc.string({ minLength: 1, maxLength: 12 })
const n = fc.nat({ max: 2 ** 40 })
const bytes = fc.uint8Array({ maxLength: 64 })
const entry: fc.Arbitrary<Entry> = fc.oneof(
  fc.record({ type: fc.constant('normal' as const), term: n, index: n, data: bytes }),
  fc.record({ type: fc.constant('conf' as const), term: n, index: n, change: fc.record({ type: fc.constantFrom('addLearner' as const, 'addVoter' as const, 'promote' as const, 'remove' as const), node: id }) }),
)
const base = { from: id, to: id, term: n }
const conf = fc.record({ voters: fc.array(id, { maxLength: 5 }), learners: fc.array(id, { maxLength: 5 }) })
const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant('app' as const), ...base, index: n, logTerm: n, commit: n, entries: fc.array(entry, { maxLength: 5 }) }),
  fc.record({ type: fc.constant('appResp' as const), ...base, index: n, reject: fc.boolean(), hintIndex: n, hintTerm: n }),
  fc.record({ type: fc.constantFrom('vote' as const, 'preVote' as const), ...base, index: n, logTerm: n, transfer: fc.boolean() }),
  fc.record({ type: fc.constantFrom('voteResp' as const, 'preVoteResp' as const), ...base, reject: fc.boolean() }),
  fc.record({ type: fc.constant('heartbeat' as const), ...base, commit: n, context: fc.string({ maxLength: 20 }) }, { requiredKeys: ['type', 'from', 'to', 'term', 'commit'] }),
  fc.record({ type: fc.constant('heartbeatResp' as const), ...base, context: fc.string({ maxLength: 20 }) }, { requiredKeys: ['type', 'from', 'to', 'term'] }),
  fc.record({ type: fc.constant('snap' as const), ...base, meta: fc.record({ index: n, term: n, confState: conf }), offset: n, total: n, chunk: bytes }),
  fc.record({ type: fc.constant('snapResp' as const), ...base, index: n, offset: n }),
  fc.record({ type: fc.constant('timeoutNow' as const), ...base }),
  fc.record({ type: fc.constant('readIndex' as const), ...base, context: fc.string({ maxLength: 20 }) }),
  fc.record({ type: fc.constant('readIndexResp' as const), ...base, context: fc.string({ maxLength: 20 }), index: n, reject: fc.boolean() }),
  fc.record({ type: fc.constant('transferLeader' as const), ...base, target: id }),
)

/** Byte arrays compare by content, whatever their class (cbor-x decodes to Buffer). */
function norm (v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: [...v] }
  if (Array.isArray(v)) return v.map(norm)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]))
  return v
}

t.test('valid messages round-trip', async t => {
  fc.assert(fc.property(message, m => {
    t.same(norm(decodeMessage(encodeMessage(m))), norm(m))
  }), { numRuns: 500 })
})

t.test('random bytes never throw anything but RaftDecodeError', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), b => {
    try {
      decodeMessage(b)
    } catch (err) {
      if (!(err instanceof RaftDecodeError)) throw err
    }
  }), { numRuns: 5000 })
  t.pass()
})

t.test('mutated valid frames never throw anything but RaftDecodeError', async t => {
  fc.assert(fc.property(message, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }), (m, flips) => {
    const b = Uint8Array.from(encodeMessage(m))
    for (const [at, v] of flips) b[at % b.length] = v
    try {
      decodeMessage(b)
    } catch (err) {
      if (!(err instanceof RaftDecodeError)) throw err
    }
  }), { numRuns: 3000 })
  t.pass()
})

t.test('truncated indefinite-length CBOR (a cbor-x slow path) is refused at once', async t => {
  for (const hex of ['9f', '869fd1a913', 'bf', '5f', '7f', 'ff', 'c1', 'd9d9f7']) t.throws(() => decodeMessage(Buffer.from(hex, 'hex')), RaftDecodeError, hex)
})

t.test('CBOR values of the wrong shape are rejected with RaftDecodeError', async t => {
  const cbor = new Encoder({ useRecords: false })
  fc.assert(fc.property(fc.anything(), v => {
    try {
      decodeMessage(cbor.encode(v))
    } catch (err) {
      if (!(err instanceof RaftDecodeError)) throw err
    }
  }), { numRuns: 2000 })
  t.throws(() => decodeMessage(cbor.encode({ type: 'app', from: 'a', to: 'b', term: -1, index: 0, logTerm: 0, commit: 0, entries: [] })), RaftDecodeError)
  t.throws(() => decodeMessage(new Uint8Array(MAX_RAFT_FRAME_BYTES + 1)), RaftDecodeError)
})
