// The signature on `left` news: a member's own verifies, at its incarnation
// only; anything else (another key, another incarnation, garbage, ids that
// are not Ed25519 peer ids) is refused without throwing.
import t from 'tap'
import fc from 'fast-check'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LEFT_SIG_HEX_CHARS, signLeft, verifyLeft } from '../../../p2p/membership/left-proof.js'

t.test('a member\'s own signature verifies; another key\'s, another incarnation\'s, or garbage does not', async t => {
  const key = await generateKeyPair('Ed25519')
  const other = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(key).toString()
  const sig = await signLeft(key, id, 7)
  t.equal(sig.length, LEFT_SIG_HEX_CHARS)
  t.ok(verifyLeft(id, 7, sig), 'own signature')
  t.notOk(verifyLeft(id, 8, sig), 'not at another incarnation')
  t.notOk(verifyLeft(id, 7, await signLeft(other, id, 7)), 'not with another member\'s key')
  t.notOk(verifyLeft(peerIdFromPrivateKey(other).toString(), 7, sig), 'not for another member')
  t.notOk(verifyLeft(id, 7, undefined), 'not unsigned')
  fc.assert(fc.property(fc.string({ maxLength: 140 }), fc.nat(), fc.oneof(fc.string({ maxLength: 140 }), fc.uint8Array({ minLength: 64, maxLength: 64 }).map(b => Buffer.from(b).toString('hex'))), (anyId, inc, anySig) => !verifyLeft(anyId, inc, anySig) && !verifyLeft(id, inc, anySig)), { numRuns: 500 })
  t.pass('random ids and signatures: refused, never thrown')
})
