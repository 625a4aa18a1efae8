// The mirror's pooled read buffers: a blob streamed while it is pulled is
// read from disk piece by piece into a few reused buffers, and the client
// still gets exactly the blob's bytes, also when it reads slowly.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { BlobStore } from '../../p2p/content/blob-store.js'
import type { PieceExchange, PullOptions, PullStats } from '../../p2p/content/piece-exchange.js'
import { hashPiece, pieceCount, pieceRange } from '../../p2p/content/pieces.js'
import { MirrorServer } from '../../agent/mirror/mirror-server.js'
import { ReadBuffers, SEND_CHUNK_BYTES } from '../../agent/mirror/read-buffers.js'
import { fakeExchange, mirrorOverStore } from '../helpers/fake-exchange.js'

t.test('ReadBuffers: a buffer given back is taken again; spares are bounded and kept by size', async t => {
  const pool = new ReadBuffers(2)
  const a = pool.take(1024)
  const b = pool.take(1024)
  t.not(a, b, 'two takes, two buffers')
  t.equal(a.byteLength, 1024)
  t.equal(pool.made, 2)
  pool.give(a)
  pool.give(a)
  t.equal(pool.spareCount(), 1, 'a buffer given twice is kept once')
  t.equal(pool.take(1024), a, 'the spare is taken again')
  t.equal(pool.made, 2, 'no new buffer for it')
  pool.give(a)
  pool.give(b)
  pool.give(pool.take(2048))
  t.equal(pool.spareCount(), 3, 'spares are kept per size')
  pool.give(new Uint8Array(1024))
  t.equal(pool.spareCount(), 3, 'no more than maxSpares of one size')
  t.equal(pool.take(2048).byteLength, 2048, 'a take gets a buffer of its own size')
})

const PIECE = 256 * 1024
const PIECES = 24

/** An exchange that writes the blob's pieces into the partial file, a little apart, and completes it (no recent pieces: the mirror reads each from disk). */
function slowExchange (store: BlobStore, blob: Uint8Array): PieceExchange {
  return fakeExchange(PIECE, async (digest: string, opts: PullOptions): Promise<PullStats> => {
    const partial = await store.openPartial(digest, opts.size, PIECE)
    for (let i = 0; i < pieceCount(opts.size, PIECE); i++) {
      const { start, length } = pieceRange(opts.size, PIECE, i)
      const piece = blob.subarray(start, start + length)
      await partial.writePiece(i, piece, hashPiece(piece))
      await new Promise(resolve => setTimeout(resolve, 1))
    }
    await partial.complete()
    return { bytesFromPeers: opts.size, bytesFromRegistry: 0, bannedPeers: [] }
  })
}

/** GETs `url` (a Range when given), pausing the response for `pauseMs` first so the server's writes queue up. */
async function slowGet (url: string, pauseMs: number, range?: string): Promise<{ status: number, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, { headers: range !== undefined ? { range } : {} }, res => {
      const parts: Buffer[] = []
      res.pause()
      setTimeout(() => res.resume(), pauseMs)
      res.on('data', (c: Buffer) => { parts.push(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** A mirror over a fresh store that holds `blob` already (`stored`) or pulls it through slowExchange when asked. */
async function startMirror (t: Test, blob: Uint8Array, stored: boolean): Promise<{ mirror: MirrorServer, digest: string, exchange: PieceExchange }> {
  let exchange!: PieceExchange
  const { mirror, store, digest } = await mirrorOverStore(t, PIECE, blob, store => { exchange = slowExchange(store, blob); return exchange })
  if (stored) await store.put(blob, digest)
  return { mirror, digest, exchange }
}

t.test('a blob streamed while pulled is read into reused buffers, and the client gets exactly its bytes', async t => {
  const blob = randomBytes(PIECES * PIECE - 1000)
  const { mirror, digest, exchange } = await startMirror(t, blob, false)
  const pieceBuffers = exchange.buffers
  const made0 = pieceBuffers.made
  const r = await slowGet(`${mirror.url}/v2/x/blobs/${digest}`, 300)
  t.equal(r.status, 200)
  t.equal(r.body.length, blob.length)
  t.ok(r.body.equals(blob), 'the bytes sent are the blob, though buffers were reused under a slow reader')
  const made = pieceBuffers.made - made0
  t.ok(made >= 1 && made <= 2, `${PIECES} pieces read from disk into ${made} buffer(s)`)
  t.ok(pieceBuffers.spareCount() >= 1, 'the buffers came back to the pool')
})

t.test('a stored blob is sent in reused buffers: whole, and a Range, exact under a slow reader', async t => {
  const blob = randomBytes(10 * SEND_CHUNK_BYTES + 777)
  const { mirror, digest } = await startMirror(t, blob, true)
  const readBuffers = mirror.readBuffers
  const made0 = readBuffers.made
  // A client that leaves after the first bytes: the send stops, the mirror goes on serving.
  await new Promise<void>(resolve => {
    const req = request(`${mirror.url}/v2/x/blobs/${digest}`, res => { res.once('data', () => { req.destroy(); resolve() }) })
    req.on('error', () => resolve())
    req.end()
  })
  // The server sees the client leave some time after it left: wait for that, up to a generous bound.
  for (let waited = 0; readBuffers.spareCount() === 0 && waited < 10_000; waited += 50) await new Promise(resolve => setTimeout(resolve, 50))
  t.ok(readBuffers.spareCount() >= 1, 'the buffer of the left response came back')
  const whole = await slowGet(`${mirror.url}/v2/x/blobs/${digest}`, 300)
  t.equal(whole.status, 200)
  t.ok(whole.body.equals(blob), 'the whole blob, exact')
  const made = readBuffers.made - made0
  t.ok(made >= 1 && made <= 2, `a left response and 11 chunks read into ${made} buffer(s)`)
  const start = 3 * SEND_CHUNK_BYTES - 5
  const end = 7 * SEND_CHUNK_BYTES + 11
  const part = await slowGet(`${mirror.url}/v2/x/blobs/${digest}`, 100, `bytes=${start}-${end}`)
  t.equal(part.status, 206)
  t.ok(part.body.equals(blob.subarray(start, end + 1)), 'the range, exact')
  t.equal(readBuffers.made - made0, made, 'the range reused the same buffers')
  t.ok(mirror.stats.bytes.local >= blob.length + (end - start + 1), 'bytes sent from the store are counted as local')
})
