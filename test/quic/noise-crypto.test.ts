// Our Noise cipher (session keys as KeyObjects) must be byte-for-byte the
// library's: a message sealed by one opens with the other, at every size and
// for both plain arrays and chunk lists, and a changed byte fails to open.
import t from 'tap'
import fc from 'fast-check'
import { randomBytes } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { noiseCrypto, whenSealed } from '../../quic/noise-crypto.js'

const bytes = (x: Uint8Array | Uint8ArrayList): Uint8Array => x instanceof Uint8Array ? x : x.subarray()

t.test('sealed by ours opens with the library, and the other way round', async t => {
  const k = randomBytes(32)
  const ad = randomBytes(32)
  for (const size of [0, 1, 1199, 1200, 1201, 4096, 65519]) {
    const nonce = randomBytes(12)
    const plain = randomBytes(size)
    const ours = bytes(noiseCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
    const theirs = bytes(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k))
    t.same(Buffer.from(ours), Buffer.from(theirs), `${size} bytes: same ciphertext and tag`)
    t.same(Buffer.from(bytes(defaultCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, k))), plain, `${size} bytes: the library opens ours`)
    t.same(Buffer.from(bytes(noiseCrypto.chaCha20Poly1305Decrypt(theirs, nonce, ad, k))), plain, `${size} bytes: ours opens the library's`)
  }
})

t.test('chunk lists in, the same bytes out', async t => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 0, maxLength: 3000 }), { minLength: 1, maxLength: 6 }), (chunks) => {
    const k = randomBytes(32)
    const nonce = randomBytes(12)
    const ad = new Uint8Array(0)
    const list = new Uint8ArrayList(...chunks)
    const flat = list.subarray()
    const sealed = bytes(noiseCrypto.chaCha20Poly1305Encrypt(list, nonce, ad, k))
    if (!Buffer.from(sealed).equals(Buffer.from(bytes(defaultCrypto.chaCha20Poly1305Encrypt(flat, nonce, ad, k))))) throw new Error('ciphertext differs')
    const opened = bytes(noiseCrypto.chaCha20Poly1305Decrypt(new Uint8ArrayList(sealed.subarray(0, 7), sealed.subarray(7)), nonce, ad, k))
    if (!Buffer.from(opened).equals(Buffer.from(flat))) throw new Error('plaintext differs')
  }), { numRuns: 100, seed: 7 })
  t.pass('100 random chunkings')
})

t.test('a changed byte, a wrong key or another session key fails to open', async t => {
  const k = randomBytes(32)
  const nonce = randomBytes(12)
  const ad = randomBytes(8)
  const sealed = Buffer.from(bytes(noiseCrypto.chaCha20Poly1305Encrypt(randomBytes(5000), nonce, ad, k)))
  const flipped = Buffer.from(sealed)
  flipped[100] = (flipped[100] as number) ^ 1
  t.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(flipped, nonce, ad, k), 'a flipped ciphertext byte')
  t.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, randomBytes(32)), 'another key')
  // Two sessions whose keys hold different bytes never share a cached key.
  const k2 = Uint8Array.from(k)
  k2[0] = (k2[0] as number) ^ 1
  t.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, k2), 'a key one bit apart')
  t.ok(noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, k), 'the right key still opens it')
})

t.test('a changed tag fails to open, whole or in a list', async t => {
  const k = randomBytes(32)
  const nonce = randomBytes(12)
  const ad = randomBytes(8)
  const sealed = Buffer.from(bytes(noiseCrypto.chaCha20Poly1305Encrypt(new Uint8ArrayList(randomBytes(3000), randomBytes(3000)), nonce, ad, k)))
  const badTag = Buffer.from(sealed)
  badTag[badTag.length - 1] = (badTag[badTag.length - 1] as number) ^ 0x80
  t.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(badTag, nonce, ad, k), 'a flipped tag bit')
  t.throws(() => noiseCrypto.chaCha20Poly1305Decrypt(new Uint8ArrayList(badTag.subarray(0, 4000), badTag.subarray(4000)), nonce, ad, k), 'a flipped tag bit, in two chunks')
  t.ok(noiseCrypto.chaCha20Poly1305Decrypt(new Uint8ArrayList(sealed.subarray(0, 5990), sealed.subarray(5990)), nonce, ad, k), 'the tag split across chunks opens')
})

t.test('whenSealed runs once the last byte of a send is sealed, once per seal', async t => {
  const k = randomBytes(32)
  const ad = new Uint8Array(0)
  const buf = randomBytes(200_000)
  const piece = buf.subarray(1000, 150_000)
  let done = 0
  whenSealed(piece, () => { done++ })
  whenSealed(piece, () => { done++ })
  const seal = (x: Uint8Array | Uint8ArrayList): void => { noiseCrypto.chaCha20Poly1305Encrypt(x, randomBytes(12), ad, k) }
  // As Noise cuts a stream: a 12-byte header before the first part, messages of 65519 bytes.
  seal(new Uint8ArrayList(randomBytes(12), piece.subarray(0, 65507)))
  seal(piece.subarray(65507, 131026))
  t.equal(done, 0, 'not before the last byte')
  seal(buf.subarray(0, 150_000 - 1)) // other bytes of the same memory, not ending where the send ends
  t.equal(done, 0, 'a view that ends elsewhere runs nothing')
  seal(new Uint8ArrayList(piece.subarray(131026), randomBytes(12)))
  t.equal(done, 1, 'the first send of the range is sealed')
  seal(piece.subarray(piece.byteLength - 100)) // a small message: the library's path
  t.equal(done, 2, 'the second send of the range, sealed by the small-message path')
  seal(piece)
  t.equal(done, 2, 'no watch left')
  t.throws(() => whenSealed(piece.subarray(0, 0), () => {}), RangeError)
})
