// PeerChannel's response parser, fuzzed: the bytes of in-order answers,
// cut anywhere, come out as the same answers with the same piece bytes in
// pooled buffers; arbitrary bytes either parse or break the channel, never
// escape as an exception, hang a request or keep a pooled buffer. The
// stream here is a stand-in with the four calls the channel makes; the
// channel over a real libp2p stream is tested in peer-channel.test.ts.
import t from 'tap'
import fc from 'fast-check'
import * as varint from 'uint8-varint'
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { ChannelClosedError, PeerChannel } from '../../../p2p/content/peer-channel.js'
import { PieceBuffers } from '../../../p2p/content/piece-buffers.js'
import { encodeResponse, MAX_CONTROL_FRAME, type PieceRequest, type PieceResponse } from '../../../p2p/content/piece-messages.js'

const DIGEST = `sha256:${'cd'.repeat(32)}`
const PIECE_SIZE = 16 * 1024

class StandInStream extends EventTarget {
  sent = 0
  aborted: Error | undefined
  send (): boolean { this.sent++; return true }
  async onDrain (): Promise<void> {}
  abort (err: Error): void { this.aborted = err }
  async close (): Promise<void> {}
  push (data: Uint8Array | Uint8ArrayList): void {
    this.dispatchEvent(Object.assign(new Event('message'), { data }))
  }
}

function channel (pool: PieceBuffers): { ch: PeerChannel, stream: StandInStream } {
  const stream = new StandInStream()
  return { ch: new PeerChannel('peer-x', stream as unknown as Stream, 60_000, pool), stream }
}

function frame (bytes: Uint8Array): Uint8Array {
  const len = varint.encode(bytes.byteLength)
  const out = new Uint8Array(len.byteLength + bytes.byteLength)
  out.set(len)
  out.set(bytes, len.byteLength)
  return out
}

type Answer = { kind: 'none' } | { kind: 'piece', index: number, bytes: Uint8Array }

const answer: fc.Arbitrary<Answer> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({ kind: fc.constant('piece' as const), index: fc.nat({ max: 100 }), bytes: fc.uint8Array({ maxLength: PIECE_SIZE }) })
)

function request (a: Answer): PieceRequest {
  return a.kind === 'none' ? { t: 'have?', digest: DIGEST, pieceSize: PIECE_SIZE } : { t: 'piece?', digest: DIGEST, pieceSize: PIECE_SIZE, index: a.index }
}

function wire (a: Answer): Uint8Array[] {
  if (a.kind === 'none') return [frame(encodeResponse({ t: 'none', digest: DIGEST }))]
  const header: PieceResponse = { t: 'piece', digest: DIGEST, index: a.index, length: a.bytes.byteLength }
  return [frame(encodeResponse(header)), frame(a.bytes)]
}

/** `bytes` cut at `cuts` (positions taken modulo its length), each cut a Uint8Array or, every other one, a two-part list. */
function cut (bytes: Uint8Array, cuts: number[]): Array<Uint8Array | Uint8ArrayList> {
  const at = [...new Set(cuts.map(c => bytes.byteLength === 0 ? 0 : c % bytes.byteLength))].sort((a, b) => a - b)
  const parts: Array<Uint8Array | Uint8ArrayList> = []
  let from = 0
  for (const [i, c] of [...at, bytes.byteLength].entries()) {
    if (c <= from) continue
    const part = bytes.subarray(from, c)
    parts.push(i % 2 === 1 && part.byteLength > 1 ? new Uint8ArrayList(part.subarray(0, 1), part.subarray(1)) : part)
    from = c
  }
  return parts
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.byteLength }
  return out
}

t.test('in-order answers cut anywhere come out whole, in order, in pooled buffers that go back', async t => {
  await fc.assert(fc.asyncProperty(fc.array(answer, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 40 }), async (answers, cuts) => {
    const pool = new PieceBuffers()
    const { ch, stream } = channel(pool)
    const results = answers.map(a => ch.request(request(a)))
    for (const part of cut(concat(answers.flatMap(wire)), cuts)) stream.push(part)
    const got = await Promise.all(results)
    for (const [i, a] of answers.entries()) {
      const r = got[i]
      if (a.kind === 'none') {
        if (r?.res.t !== 'none' || r.data !== undefined) return false
        continue
      }
      if (r?.res.t !== 'piece' || r.res.index !== a.index || r.data === undefined) return false
      if (Buffer.compare(Buffer.from(r.data.bytes), Buffer.from(a.bytes)) !== 0) return false
      r.data.release()
    }
    const pieces = answers.filter(a => a.kind === 'piece').length
    return !ch.isBroken && stream.aborted === undefined && pool.spareCount() === pool.made && pool.made <= pieces
  }), { numRuns: 150 })
})

t.test('arbitrary bytes parse or break the channel: nothing escapes, no request hangs, no buffer is kept', async t => {
  await fc.assert(fc.asyncProperty(fc.array(answer, { minLength: 1, maxLength: 3 }), fc.uint8Array({ maxLength: 256 }), fc.array(fc.nat(), { maxLength: 10 }), async (answers, junk, cuts) => {
    const pool = new PieceBuffers()
    const { ch, stream } = channel(pool)
    const results = answers.map(a => ch.request(request(a)).then(r => { r.data?.release(); return 'answered' }, (err: Error) => err instanceof ChannelClosedError ? 'broken' : `other: ${err.name}`))
    for (const part of cut(junk, cuts)) stream.push(part)
    ch.abort() // whatever is still owed now fails
    const outcomes = await Promise.all(results)
    return outcomes.every(o => o === 'answered' || o === 'broken') && pool.spareCount() === pool.made
  }), { numRuns: 400 })
})

t.test('what a peer may not send breaks the channel', async t => {
  const cases: Array<[string, (pool: PieceBuffers) => Uint8Array[], Answer]> = [
    ['an answer nobody asked for', () => wire({ kind: 'none' }).concat(wire({ kind: 'none' })), { kind: 'none' }],
    ['a piece for a bitfield question', () => wire({ kind: 'piece', index: 1, bytes: new Uint8Array(10) }), { kind: 'none' }],
    ['a piece longer than the piece size asked for', () => wire({ kind: 'piece', index: 1, bytes: new Uint8Array(PIECE_SIZE + 1) }), { kind: 'piece', index: 1, bytes: new Uint8Array(0) }],
    ['a data frame of another length than its header says', () => [frame(encodeResponse({ t: 'piece', digest: DIGEST, index: 1, length: 10 })), frame(new Uint8Array(9))], { kind: 'piece', index: 1, bytes: new Uint8Array(0) }],
    ['a control frame over the limit', () => [varint.encode(MAX_CONTROL_FRAME + 1)], { kind: 'none' }],
    ['a length that never ends', () => [new Uint8Array(8).fill(0xff)], { kind: 'none' }]
  ]
  for (const [what, bytes, asked] of cases) {
    const pool = new PieceBuffers()
    const { ch, stream } = channel(pool)
    const first = ch.request(request(asked)).then(r => { r.data?.release(); return r })
    for (const b of bytes(pool)) stream.push(b)
    t.ok(ch.isBroken, `${what}: broken`)
    t.ok(stream.aborted instanceof ChannelClosedError, `${what}: the stream was aborted`)
    if (what === 'an answer nobody asked for') t.equal((await first).res.t, 'none', `${what}: the one asked for was answered`)
    else await t.rejects(first, ChannelClosedError, `${what}: the request failed`)
    t.equal(pool.spareCount(), pool.made, `${what}: no pooled buffer kept`)
  }
})

t.test('a stream that closes with answers owed fails them and gives back a piece half read', async t => {
  const pool = new PieceBuffers()
  const { ch, stream } = channel(pool)
  const req = ch.request(request({ kind: 'piece', index: 3, bytes: new Uint8Array(0) }))
  const bytes = concat(wire({ kind: 'piece', index: 3, bytes: new Uint8Array(1000).fill(9) }))
  stream.push(bytes.subarray(0, bytes.byteLength - 10))
  t.equal(pool.made, 1, 'the piece got its buffer when its frame began')
  stream.dispatchEvent(Object.assign(new Event('close'), { error: undefined }))
  await t.rejects(req, ChannelClosedError)
  t.equal(pool.spareCount(), 1, 'its buffer went back')
})
