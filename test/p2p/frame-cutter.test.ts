// FrameCutter (p2p/frame-cutter.ts): frames cut from chunks split anywhere
// are the frames sent, lpStream's framing byte for byte; lengths above the
// limit and oversized buffers are refused with lpStream's error names.
import t from 'tap'
import fc from 'fast-check'
import * as varint from 'uint8-varint'
import { FrameCutter, frameAll } from '../../p2p/frame-cutter.js'
import { classifyEnd } from '../../p2p/peer-link.js'

function frame (body: Uint8Array): Uint8Array {
  return Buffer.concat([varint.encode(body.byteLength), body])
}

t.test('fuzz: any frames, split at any points, come out whole and in order', async t => {
  fc.assert(fc.property(
    fc.array(fc.uint8Array({ maxLength: 400 }), { maxLength: 12 }),
    fc.array(fc.nat(), { maxLength: 20 }),
    (bodies, cuts) => {
      const wire = Buffer.concat(bodies.map(frame))
      const points = [...new Set(cuts.map(c => c % (wire.byteLength + 1)))].sort((a, b) => a - b)
      const cutter = new FrameCutter(1024, 1 << 20)
      const out: Uint8Array[] = []
      let at = 0
      for (const p of [...points, wire.byteLength]) {
        out.push(...cutter.push(wire.subarray(at, p)).map(f => Uint8Array.from(f)))
        at = p
      }
      return out.length === bodies.length && out.every((f, i) => Buffer.from(f).equals(Buffer.from(bodies[i]!)))
    }))
  t.pass('fuzzed')
})

t.test('frameAll writes lpStream\'s framing byte for byte', async t => {
  fc.assert(fc.property(
    fc.array(fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 70_000 }).map(n => new Uint8Array(n).fill(7))), { maxLength: 6 }),
    (bodies) => Buffer.from(frameAll(bodies)).equals(Buffer.concat(bodies.map(frame)))), { numRuns: 200 })
  t.pass('fuzzed')
})

t.test('a length above the limit is a decode error, at any split', async t => {
  const cutter = new FrameCutter(200, 1 << 20)
  const head = varint.encode(201)
  t.same(cutter.push(head.subarray(0, 1)), [])
  let err: unknown
  try { cutter.push(head.subarray(1)) } catch (e) { err = e }
  t.equal(classifyEnd(err), 'decode', String(err))
  let err2: unknown
  try { new FrameCutter(100, 1 << 20).push(Uint8Array.from([0xff, 0xff, 0xff])) } catch (e) { err2 = e }
  t.equal(classifyEnd(err2), 'decode', `an endless length: ${String(err2)}`)
})

t.test('more unframed bytes than the buffer holds are refused', async t => {
  const cutter = new FrameCutter(1000, 50)
  t.same(cutter.push(frame(new Uint8Array(40)).subarray(0, 30)), [])
  t.throws(() => cutter.push(new Uint8Array(30)), { name: 'StreamBufferError' })
})
