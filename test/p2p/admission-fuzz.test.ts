// Every admission decoder rejects garbage with its typed error, never anything else.
import t from 'tap'
import fc from 'fast-check'
import { encode } from 'cbor-x'
import { decodeAdmit, encodeAdmit, MAX_ADMIT_FRAME, MAX_EVICTED_HANDOVER, type AdmitMessage } from '../../p2p/admission/messages.js'
import { decodeFrame } from '../../p2p/wire.js'
import { ForwardRequest, MAX_FORWARD_FRAME } from '../../agent/raft/forward.js'
import { parseToken, formatToken } from '../../p2p/token.js'

const typed = (err: unknown): boolean => ['WireDecodeError', 'FrameTooLargeError'].includes((err as Error).name)

t.test('random bytes never crash the admission decoder', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
    try { decodeAdmit(bytes) } catch (err) { if (!typed(err)) throw err }
  }), { numRuns: 2000 })
  t.pass('only typed errors')
})

t.test('random CBOR values never crash the admission decoder', async t => {
  fc.assert(fc.property(fc.anything({ maxDepth: 3 }), (v) => {
    let bytes: Uint8Array
    try { bytes = encode(v) as Uint8Array } catch { return }
    try { decodeAdmit(bytes) } catch (err) { if (!typed(err)) throw err }
  }), { numRuns: 1000 })
  t.pass('only typed errors')
})

t.test('oversized frames are refused with FrameTooLargeError', async t => {
  t.throws(() => decodeAdmit(new Uint8Array(MAX_ADMIT_FRAME + 1)), { name: 'FrameTooLargeError' })
  t.throws(() => decodeFrame(ForwardRequest, new Uint8Array(MAX_FORWARD_FRAME + 1), MAX_FORWARD_FRAME), { name: 'FrameTooLargeError' })
})

t.test('valid admission messages round-trip', async t => {
  const hex = (n: number): fc.Arbitrary<string> => fc.uint8Array({ minLength: n, maxLength: n }).map(b => Buffer.from(b).toString('hex'))
  const keyVersion = fc.integer({ min: 1, max: 1000 })
  const rekey = fc.record({ version: fc.integer({ min: 2, max: 1000 }), key: hex(32), evicted: fc.array(fc.string({ minLength: 1, maxLength: 60 }), { maxLength: 4 }) })
  const msg: fc.Arbitrary<AdmitMessage> = fc.oneof(
    fc.record({ t: fc.constant('hello' as const), mode: fc.constantFrom('join' as const, 'member' as const), clusterId: hex(8), nonce: hex(32), secretVersion: fc.nat(), keyVersion }),
    fc.record({ t: fc.constant('challenge' as const), nonce: hex(32), proof: hex(32), secretVersion: fc.nat(), keyVersion }),
    fc.record({ t: fc.constant('proof' as const), proof: hex(32), joinSecret: hex(32), secretVersion: fc.nat(), rekey }, { requiredKeys: ['t', 'proof', 'secretVersion'] }),
    fc.record({ t: fc.constant('welcome' as const), clusterKey: hex(32), joinSecret: hex(32), secretVersion: fc.nat(), keyVersion, rekey, members: fc.array(fc.record({ id: fc.string({ maxLength: 60 }), addrs: fc.array(fc.string({ maxLength: 60 }), { maxLength: 3 }) }), { maxLength: 3 }) }, { requiredKeys: ['t', 'secretVersion', 'keyVersion', 'members'] }),
    fc.record({ t: fc.constant('reject' as const), reason: fc.constantFrom('cluster' as const, 'token' as const, 'revoked' as const, 'rate' as const, 'protocol' as const, 'stale' as const) })
  )
  fc.assert(fc.property(msg, (m) => { t.same(decodeAdmit(encodeAdmit(m)), m) }), { numRuns: 300 })
})

t.test('messages of agents before key versions decode with key version 1; a rekey to version 1 or with too many ids is refused', async t => {
  const nonce = 'ab'.repeat(32)
  const hello = decodeAdmit(encode({ t: 'hello', mode: 'member', clusterId: 'cd'.repeat(8), nonce, secretVersion: 3 }) as Uint8Array)
  t.equal(hello.t === 'hello' ? hello.keyVersion : 0, 1)
  t.throws(() => decodeAdmit(encode({ t: 'proof', proof: nonce, secretVersion: 1, rekey: { version: 1, key: nonce, evicted: [] } }) as Uint8Array), { name: 'WireDecodeError' })
  t.throws(() => decodeAdmit(encode({ t: 'proof', proof: nonce, secretVersion: 1, rekey: { version: 2, key: nonce, evicted: Array.from({ length: MAX_EVICTED_HANDOVER + 1 }, (_, i) => `p${i}`) } }) as Uint8Array), { name: 'WireDecodeError' })
})

t.test('random forward requests never crash the decoder', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
    try { decodeFrame(ForwardRequest, bytes, MAX_FORWARD_FRAME) } catch (err) { if (!typed(err)) throw err }
  }), { numRuns: 1000 })
  t.pass('only typed errors')
})

t.test('token parsing: malformed strings get InvalidTokenError, valid ones round-trip', async t => {
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => {
    try { parseToken(s) } catch (err) { if ((err as Error).name !== 'InvalidTokenError') throw err }
  }), { numRuns: 1000 })
  const tok = { clusterId: 'ab'.repeat(8), fingerprint: 'cd'.repeat(12), secret: 'ef'.repeat(32) }
  t.same(parseToken(formatToken(tok)), tok)
})
