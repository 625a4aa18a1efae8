// A structural check of a CBOR frame before cbor-x decodes it. cbor-x reads
// past the end of a truncated indefinite-length item until its own item
// limits trip, which takes seconds per frame (measured: `bf` alone, 2.5 s;
// `9f`, 16 s) — a cheap way for a peer to pin a CPU. This walk accepts only
// what our encoder produces: definite lengths, tag 64 (byte arrays) and
// nothing else, items that fit in the frame, bounded depth and item count,
// and exactly one top-level item.
import { InvalidMessageError } from './errors.js'

export const MAX_CBOR_DEPTH = 16
export const MAX_CBOR_ITEMS = 100_000
const ALLOWED_TAGS = new Set([64])

export function checkCbor (buf: Uint8Array, limits: { maxDepth?: number, maxItems?: number } = {}): void {
  const maxDepth = limits.maxDepth ?? MAX_CBOR_DEPTH
  const maxItems = limits.maxItems ?? MAX_CBOR_ITEMS
  let pos = 0
  let items = 0
  const fail = (why: string): never => { throw new InvalidMessageError(`malformed CBOR at byte ${pos}: ${why}`) }
  const readArg = (info: number): number => {
    if (info < 24) return info
    const n = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : fail(info === 31 ? 'indefinite length' : 'reserved additional info')
    if (pos + n > buf.length) fail('truncated length')
    let v = 0
    for (let i = 0; i < n; i++) v = v * 256 + (buf[pos + i] as number)
    pos += n
    return v
  }
  const item = (depth: number): void => {
    if (depth > maxDepth) fail('nested too deep')
    if (++items > maxItems) fail('too many items')
    if (pos >= buf.length) fail('truncated item')
    const b = buf[pos++] as number
    const major = b >> 5
    const info = b & 0x1f
    switch (major) {
      case 0: case 1: readArg(info); return
      case 2: case 3: {
        const len = readArg(info)
        if (pos + len > buf.length) fail('string longer than the frame')
        pos += len
        return
      }
      case 4: {
        const n = readArg(info)
        if (n > buf.length - pos) fail('array longer than the frame')
        for (let i = 0; i < n; i++) item(depth + 1)
        return
      }
      case 5: {
        const n = readArg(info)
        if (n * 2 > buf.length - pos) fail('map longer than the frame')
        for (let i = 0; i < 2 * n; i++) item(depth + 1)
        return
      }
      case 6: {
        const tag = readArg(info)
        if (!ALLOWED_TAGS.has(tag)) fail(`tag ${tag} not allowed`)
        item(depth + 1)
        return
      }
      default: {
        if (info === 31) fail('break outside an indefinite item')
        if (info >= 28) fail('reserved simple value')
        if (info === 24) { if (pos + 1 > buf.length) fail('truncated'); pos += 1 } else if (info === 25) { pos += 2 } else if (info === 26) { pos += 4 } else if (info === 27) { pos += 8 }
        if (pos > buf.length) fail('truncated float')
      }
    }
  }
  item(0)
  if (pos !== buf.length) fail('trailing bytes after the message')
}
