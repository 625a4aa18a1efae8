// A linear-time well-formedness check run before cbor-x sees untrusted bytes.
// cbor-x 1.6 spins for ~30 s on a truncated indefinite-length array (the
// single byte 0x9f), so only what our encoder produces is let through:
// definite lengths, no tags, bounded nesting, no trailing bytes.

export const MAX_CBOR_DEPTH = 16

/** Returns null if `b` is acceptable, otherwise what is wrong with it. */
export function cborProblem (b: Uint8Array, maxDepth = MAX_CBOR_DEPTH): string | null {
  let pos = 0
  const need = (n: number): boolean => n <= b.length - pos
  const item = (depth: number): string | null => {
    if (depth > maxDepth) return `nesting deeper than ${maxDepth}`
    if (!need(1)) return 'truncated'
    const ib = b[pos++] ?? 0
    const major = ib >> 5
    const ai = ib & 31
    let len: number
    if (ai < 24) {
      len = ai
    } else if (ai <= 27) {
      const n = 1 << (ai - 24)
      if (!need(n)) return 'truncated'
      len = 0
      for (let i = 0; i < n; i++) len = len * 256 + (b[pos++] ?? 0)
    } else if (ai === 31) {
      return 'indefinite-length items are not accepted'
    } else {
      return `reserved additional info ${ai}`
    }
    switch (major) {
      case 0: case 1: case 7: return null
      case 2: case 3:
        if (!need(len)) return 'string longer than the frame'
        pos += len
        return null
      case 4: case 5: {
        const items = major === 4 ? len : len * 2
        if (!need(items)) return 'container longer than the frame'
        for (let i = 0; i < items; i++) {
          const p = item(depth + 1)
          if (p !== null) return p
        }
        return null
      }
      default: return 'tags are not accepted'
    }
  }
  const p = item(0)
  if (p !== null) return p
  return pos === b.length ? null : `${b.length - pos} trailing bytes`
}
