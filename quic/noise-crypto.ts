// The ChaCha20-Poly1305 that Noise encrypts every TCP/WebSocket message
// with, on Node's crypto like the library's own, but with the session key
// turned into a KeyObject once instead of for every message: Noise seals
// each message (up to 64 KiB) with a new cipher, and building one from raw
// key bytes cost about 14 µs against 1.4 µs from a KeyObject — a tenth of
// the CPU an agent spends moving pieces. Small messages go to the library's
// implementation, which is faster for them.
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'

type NoiseCrypto = typeof defaultCrypto

const ALGORITHM = 'chacha20-poly1305'
const TAG_BYTES = 16
/** Below this many bytes the library's WebAssembly implementation is faster. */
const SMALL_MESSAGE_BYTES = 1200

/** A Noise session keeps its key in one Uint8Array for its whole life (no rekeying in libp2p's Noise). */
const keyObjects = new WeakMap<Uint8Array, KeyObject>()

function keyObject (k: Uint8Array): KeyObject {
  let ko = keyObjects.get(k)
  if (ko === undefined) {
    ko = createSecretKey(k)
    keyObjects.set(k, ko)
  }
  return ko
}

export const noiseCrypto: NoiseCrypto = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt (plaintext, nonce, ad, k) {
    if (plaintext.byteLength < SMALL_MESSAGE_BYTES) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
    const cipher = createCipheriv(ALGORITHM, keyObject(k), nonce, { authTagLength: TAG_BYTES })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    if (plaintext instanceof Uint8Array) {
      const body = cipher.update(plaintext)
      const final = cipher.final()
      const tag = cipher.getAuthTag()
      return Buffer.concat([body, final, tag], body.byteLength + final.byteLength + tag.byteLength)
    }
    const out = new Uint8ArrayList()
    for (const buf of plaintext) out.append(cipher.update(buf))
    const final = cipher.final()
    if (final.byteLength > 0) out.append(final)
    out.append(cipher.getAuthTag())
    return out
  },
  chaCha20Poly1305Decrypt (ciphertext, nonce, ad, k, dst) {
    if (ciphertext.byteLength < SMALL_MESSAGE_BYTES) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
    const decipher = createDecipheriv(ALGORITHM, keyObject(k), nonce, { authTagLength: TAG_BYTES })
    const text = ciphertext instanceof Uint8Array ? ciphertext.subarray(0, ciphertext.byteLength - TAG_BYTES) : ciphertext.sublist(0, ciphertext.byteLength - TAG_BYTES)
    decipher.setAAD(ad, { plaintextLength: text.byteLength })
    decipher.setAuthTag(ciphertext.subarray(ciphertext.byteLength - TAG_BYTES))
    if (text instanceof Uint8Array) {
      const body = decipher.update(text)
      const final = decipher.final()
      return final.byteLength > 0 ? Buffer.concat([body, final], body.byteLength + final.byteLength) : body
    }
    const out = new Uint8ArrayList()
    for (const buf of text) out.append(decipher.update(buf))
    const final = decipher.final()
    if (final.byteLength > 0) out.append(final)
    return out
  }
}
