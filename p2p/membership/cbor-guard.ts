// A linear-time well-formedness check run before cbor-x sees untrusted
// bytes. Measured: cbor-x spends 10-17 s on one 500-byte random input whose
// array header claims 2^32 items (it loops until its own 112M-item limit), so
// a peer could stall the event loop with one small frame. Here every declared
// length must fit in the bytes that remain, nesting is bounded, and the
// features our messages never use (tags, indefinite lengths) are refused.

export class CborShapeError extends Error {
  override name = 'CborShapeError'
}

/** Deepest nesting of arrays/maps accepted. */
export const MAX_CBOR_DEPTH = 16

export function checkCborShape (bytes: Uint8Array, maxDepth = MAX_CBOR_DEPTH): void {
  const len = bytes.length
  let pos = 0
  // Items still expected at each open nesting level; the top level holds one.
  const need: number[] = [1]
  while (need.length > 0) {
    const top = need.length - 1
    if (need[top] === 0) { need.pop(); continue }
    need[top] = (need[top] as number) - 1
    if (pos >= len) throw new CborShapeError(`CBOR truncated at byte ${pos}`)
    const ib = bytes[pos++] as number
    const major = ib >> 5
    const ai = ib & 31
    let arg: number
    if (ai < 24) {
      arg = ai
    } else if (ai <= 27) {
      const n = 1 << (ai - 24) // 1, 2, 4 or 8 bytes
      if (pos + n > len) throw new CborShapeError(`CBOR truncated in a header at byte ${pos}`)
      arg = 0
      for (let i = 0; i < n; i++) arg = arg * 256 + (bytes[pos + i] as number)
      pos += n
    } else {
      throw new CborShapeError(`CBOR indefinite length or reserved value at byte ${pos - 1}`)
    }
    const left = len - pos
    switch (major) {
      case 0: case 1: case 7:
        break
      case 2: case 3:
        if (arg > left) throw new CborShapeError(`CBOR string of ${arg} bytes with ${left} left`)
        pos += arg
        break
      case 4:
        if (arg > left) throw new CborShapeError(`CBOR array of ${arg} items with ${left} bytes left`)
        need.push(arg)
        break
      case 5:
        if (arg * 2 > left) throw new CborShapeError(`CBOR map of ${arg} entries with ${left} bytes left`)
        need.push(arg * 2)
        break
      default:
        throw new CborShapeError(`CBOR tag at byte ${pos} is not allowed`)
    }
    if (need.length > maxDepth + 1) throw new CborShapeError(`CBOR nested deeper than ${maxDepth}`)
  }
  if (pos !== len) throw new CborShapeError(`CBOR has ${len - pos} trailing bytes`)
}
