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

interface SealWatch { end: number, done: () => void }

/**
 * Sends waiting to hear that their last byte was sealed, by the memory they
 * view. Weak: a buffer nobody else holds goes, watches and all.
 */
const sealWatches = new WeakMap<ArrayBufferLike, SealWatch[]>()

/**
 * Calls `done` once a Noise session has sealed the last byte of `bytes`,
 * sent on a stream. A stream hands Noise its bytes in order, and Noise
 * reads plaintext only while sealing it (what goes on to the socket is the
 * new ciphertext), so from then on no layer holds the stream's view of
 * `bytes` and the memory may be reused. Registered once per send of
 * `bytes`; `done` never runs for a send that is not sealed here (a QUIC
 * stream, an aborted one): its memory is then left to the garbage
 * collector. Sends of the same range share the watches: each seal of the
 * range's last byte runs one of them, so all have run only when every send
 * has been sealed. Nothing but such sends may seal views of that memory.
 */
export function whenSealed (bytes: Uint8Array, done: () => void): void {
  if (bytes.byteLength === 0) throw new RangeError('an empty view is never sealed')
  let list = sealWatches.get(bytes.buffer)
  if (list === undefined) {
    list = []
    sealWatches.set(bytes.buffer, list)
  }
  list.push({ end: bytes.byteOffset + bytes.byteLength, done })
}

/** After `part` has been read to seal it: runs a watch on a send whose last byte it held. */
function sealed (part: Uint8Array): void {
  const list = sealWatches.get(part.buffer)
  if (list === undefined) return
  const end = part.byteOffset + part.byteLength
  const i = list.findIndex(w => w.end === end)
  if (i < 0) return
  const [w] = list.splice(i, 1)
  if (list.length === 0) sealWatches.delete(part.buffer)
  w?.done()
}

function sealedAll (plaintext: Uint8Array | Uint8ArrayList): void {
  if (plaintext instanceof Uint8Array) sealed(plaintext)
  else for (const part of plaintext) sealed(part)
}

export const noiseCrypto: NoiseCrypto = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt (plaintext, nonce, ad, k) {
    if (plaintext.byteLength < SMALL_MESSAGE_BYTES) {
      const out = defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
      sealedAll(plaintext)
      return out
    }
    const cipher = createCipheriv(ALGORITHM, keyObject(k), nonce, { authTagLength: TAG_BYTES })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    if (plaintext instanceof Uint8Array) {
      const body = cipher.update(plaintext)
      const final = cipher.final()
      const tag = cipher.getAuthTag()
      sealed(plaintext)
      return Buffer.concat([body, final, tag], body.byteLength + final.byteLength + tag.byteLength)
    }
    // The ciphertext goes out as a list (Noise frames it, the socket writes
    // it with one writev: see tcp-writes.ts), so its parts are not joined.
    const out = new Uint8ArrayList()
    for (const buf of plaintext) {
      out.append(cipher.update(buf))
      sealed(buf)
    }
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
