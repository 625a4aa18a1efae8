// Fuzzing the /bolt/swim/1 decoder: random bytes and mutated valid messages
// only ever raise SwimDecodeError; valid messages round-trip unchanged.
import t from 'tap'
import fc from 'fast-check'
import { Encoder } from 'cbor-x'
import { decodeMessage, encodeMessage, MAX_MESSAGE_BYTES, SwimDecodeError, SwimEncodeError } from '../../../p2p/membership/codec.js'
import { MemberMetaSchema, type MemberMeta } from '../../../p2p/membership/meta.js'
import type { Gossip, SwimMessage } from '../../../p2p/membership/messages.js'

const id = fc.string({ minLength: 1, maxLength: 60 })
const inc = fc.nat()
const meta: fc.Arbitrary<MemberMeta> = fc.record({
  name: fc.string({ minLength: 1, maxLength: 40 }),
  role: fc.constantFrom('server' as const, 'client' as const),
  addrs: fc.array(fc.string({ minLength: 1, maxLength: 80 }), { maxLength: 4 }),
  resources: fc.record({
    cpus: fc.nat({ max: 512 }),
    memoryBytes: fc.nat(),
    gpus: fc.array(fc.record({ vendor: fc.string({ maxLength: 10 }), model: fc.string({ maxLength: 20 }), memoryBytes: fc.nat(), index: fc.nat({ max: 16 }) }), { maxLength: 3 })
  }),
  labels: fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }).filter(k => k !== '__proto__'), fc.string({ maxLength: 30 }), { maxKeys: 5 }),
  version: fc.string({ maxLength: 20 }),
  capsules: fc.record({ allowHostNetwork: fc.boolean(), allowGaming: fc.boolean() })
}, { requiredKeys: ['name', 'role', 'addrs', 'resources', 'labels', 'version'] })
const leftSig = fc.uint8Array({ minLength: 64, maxLength: 64 }).map(b => Buffer.from(b).toString('hex'))
const gossip: fc.Arbitrary<Gossip> = fc.oneof(
  fc.record({ k: fc.constant('alive' as const), id, inc, meta }),
  fc.record({ k: fc.constant('suspect' as const), id, inc, from: id }),
  fc.record({ k: fc.constant('dead' as const), id, inc, from: id }),
  fc.record({ k: fc.constant('left' as const), id, inc, sig: leftSig }, { requiredKeys: ['k', 'id', 'inc'] })
)
const g = fc.array(gossip, { maxLength: 5 })
const message: fc.Arbitrary<SwimMessage> = fc.oneof(
  fc.record({ t: fc.constant('ping' as const), seq: fc.nat(), target: id, g }),
  fc.record({ t: fc.constant('ack' as const), seq: fc.nat(), g }),
  fc.record({ t: fc.constant('nack' as const), seq: fc.nat(), g }),
  fc.record({ t: fc.constant('ping-req' as const), seq: fc.nat(), target: id, addrs: fc.array(fc.string({ minLength: 1, maxLength: 50 }), { maxLength: 3 }), g }),
  fc.record({ t: fc.constant('gossip' as const), g }),
  fc.record({
    t: fc.constant('push-pull' as const),
    join: fc.boolean(),
    reply: fc.boolean(),
    states: fc.array(fc.record({ id, inc, state: fc.constantFrom('alive' as const, 'suspect' as const, 'dead' as const, 'left' as const), meta, sig: leftSig }, { requiredKeys: ['id', 'inc', 'state', 'meta'] }), { maxLength: 4 })
  })
)

function onlyTypedError (bytes: Uint8Array): void {
  try {
    decodeMessage(bytes)
  } catch (err) {
    if (!(err instanceof SwimDecodeError) || err.name !== 'SwimDecodeError') throw err
  }
}

t.test('valid messages round-trip', async t => {
  // Compared as JSON: fast-check builds some objects with a null prototype.
  fc.assert(fc.property(message, m => JSON.stringify(decodeMessage(encodeMessage(m))) === JSON.stringify(m)), { numRuns: 500 })
  t.pass()
})

t.test('random bytes only raise SwimDecodeError', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), onlyTypedError), { numRuns: 20000 })
  t.pass()
})

t.test('mutated valid messages only raise SwimDecodeError', async t => {
  fc.assert(fc.property(message, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (m, flips) => {
    const bytes = encodeMessage(m)
    for (const [at, v] of flips) bytes[at % bytes.length] = v
    onlyTypedError(bytes)
    onlyTypedError(bytes.subarray(0, bytes.length >> 1))
  }), { numRuns: 1500 })
  t.pass()
})

t.test('arbitrary CBOR values only raise SwimDecodeError', async t => {
  const cbor = new Encoder({ useRecords: false, mapsAsObjects: true })
  fc.assert(fc.property(fc.anything({ maxDepth: 3 }), v => {
    let bytes: Uint8Array
    try { bytes = cbor.encode(v) } catch { return }
    onlyTypedError(bytes)
  }), { numRuns: 1000 })
  t.pass()
})

t.test('hostile headers are refused in linear time (cbor-x alone loops for seconds on them)', async t => {
  const cases = [
    Uint8Array.from([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // array of 2^64-1 items
    Uint8Array.from([0x9a, 0xff, 0xff, 0xff, 0xff, 0x00]), // array of 2^32-1 items
    Uint8Array.from([0xba, 0x7f, 0xff, 0xff, 0xff, 0x00, 0x00]), // map of 2^31 entries
    Uint8Array.from([0x5a, 0xff, 0xff, 0xff, 0xff]), // byte string of 4 GiB
    Uint8Array.from([0x9f, 0x01, 0xff]), // indefinite array
    Uint8Array.from([0xc1, 0x00]), // tag
    Uint8Array.from(Array.from({ length: 40 }, () => 0x81)) // nesting deeper than allowed
  ]
  for (const bytes of cases) t.throws(() => decodeMessage(bytes), { name: 'SwimDecodeError' })
})

t.test('bounds: oversized frames, too many gossip items, oversized metadata', async t => {
  t.throws(() => decodeMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1)), { name: 'SwimDecodeError', message: /exceeds/ })
  const cbor = new Encoder({ useRecords: false, mapsAsObjects: true })
  const many = { t: 'gossip', g: Array.from({ length: 300 }, (_, i) => ({ k: 'left', id: `n${i}`, inc: 1 })) }
  t.throws(() => decodeMessage(cbor.encode(many)), SwimDecodeError)
  t.throws(() => decodeMessage(cbor.encode({ t: 'ack', seq: -1, g: [] })), SwimDecodeError)
  t.throws(() => decodeMessage(cbor.encode({ t: 'ack', seq: 1.5, g: [] })), SwimDecodeError)
  const big: MemberMeta = { name: 'x', role: 'server', addrs: [], resources: { cpus: 1, memoryBytes: 1, gpus: [] }, labels: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'v'.repeat(200)])), version: '1' }
  t.notOk(MemberMetaSchema.safeParse(big).success, 'metadata over MAX_META_BYTES is rejected')
  const huge: SwimMessage = { t: 'push-pull', join: false, reply: false, states: Array.from({ length: 400 }, (_, i) => ({ id: `n${i}`, inc: 1, state: 'alive' as const, meta: { ...big, labels: { a: 'b'.repeat(250) } } })) }
  t.throws(() => encodeMessage(huge), SwimEncodeError, 'the encoder refuses to produce an oversized frame')
})
