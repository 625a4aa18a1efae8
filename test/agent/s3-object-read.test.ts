// Reading objects for GetObject: any byte range of a chunked object comes
// out exact, piece by piece, and a response never has more than its own
// piece buffers handed to the socket at once, however slow the socket. The
// GC pacer requests a scavenge after every pace of body bytes.
import t from 'tap'
import fc from 'fast-check'
import { Writable } from 'node:stream'
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FileHandle } from 'node:fs/promises'
import { GET_BUFFERS_PER_RESPONSE, GET_PIECE_BYTES, readRange, sendRange } from '../../agent/s3/object-read.js'
import { GcPacer } from '../../agent/s3/gc-pacer.js'
import type { ObjectManifest } from '../../p2p/content/objects.js'

/** An object of `sizes` chunks, each a file of known bytes. */
async function fixture (dir: string, sizes: number[]): Promise<{ manifest: ObjectManifest, bytes: Buffer, objects: { openChunk: (d: string) => Promise<FileHandle> } }> {
  const parts: Buffer[] = []
  const chunks = sizes.map((size, i) => {
    const b = Buffer.alloc(size)
    for (let j = 0; j < size; j++) b[j] = (j * 7 + i * 13) & 255
    parts.push(b)
    return { digest: `sha256:${i.toString(16).padStart(64, '0')}`, size }
  })
  for (const [i, c] of chunks.entries()) await writeFile(join(dir, c.digest.slice(7)), parts[i]!)
  const manifest: ObjectManifest = { mediaType: 'application/vnd.bolt.object.manifest.v1+json', size: sizes.reduce((a, b) => a + b, 0), chunks }
  return { manifest, bytes: Buffer.concat(parts), objects: { openChunk: async d => await open(join(dir, d.slice(7)), 'r') } }
}

/** A socket that takes its time: each write completes on a later tick; counts writes in flight. */
class SlowSocket extends Writable {
  inFlight = 0
  maxInFlight = 0
  readonly got: Buffer[] = []
  override _write (chunk: Buffer, _e: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.got.push(Buffer.from(chunk))
    setImmediate(cb)
  }
}

t.test('sendRange: any range comes out exact, with at most the response\'s buffers in flight', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-s3read-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const { manifest, bytes, objects } = await fixture(dir, [GET_PIECE_BYTES + 5, 3, GET_PIECE_BYTES * 2 + 1, 1000])
  await fc.assert(fc.asyncProperty(fc.nat({ max: bytes.length - 1 }), fc.nat({ max: bytes.length }), async (start, len) => {
    const length = Math.min(len, bytes.length - start)
    const out = new SlowSocket({ highWaterMark: 1 })
    let pending = 0
    const origWrite = out.write.bind(out)
    out.write = ((chunk: Buffer, cb: (err?: Error | null) => void) => {
      pending++
      out.maxInFlight = Math.max(out.maxInFlight, pending)
      return origWrite(chunk, (err?: Error | null) => { pending--; cb(err) })
    }) as typeof out.write
    let counted = 0
    await sendRange(objects, manifest, start, length, out, new AbortController().signal, n => { counted += n })
    await new Promise<void>(resolve => { out.end(resolve) })
    t.equal(Buffer.concat(out.got).compare(bytes.subarray(start, start + length)), 0)
    t.equal(counted, length)
    t.ok(out.maxInFlight <= GET_BUFFERS_PER_RESPONSE, `${out.maxInFlight} writes in flight`)
  }), { numRuns: 25 })
})

t.test('sendRange ends when the response is aborted while the client reads nothing', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-s3read-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const { manifest, objects } = await fixture(dir, [GET_PIECE_BYTES * 4])
  const stuck = new Writable({ write (_c, _e, _cb) { /* never completes: a client that stopped reading */ } })
  const ac = new AbortController()
  let pieces = 0
  const sending = sendRange(objects, manifest, 0, manifest.size, stuck, ac.signal, () => {
    if (++pieces === GET_BUFFERS_PER_RESPONSE) ac.abort(new Error('client went away'))
  })
  await t.rejects(sending, /client went away/)
  t.equal(pieces, GET_BUFFERS_PER_RESPONSE, 'no piece read after the abort')
})

t.test('readRange yields the range for a reader that copies each piece', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-s3read-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const { manifest, bytes, objects } = await fixture(dir, [10, GET_PIECE_BYTES + 3, 7])
  const got: Buffer[] = []
  for await (const p of readRange(objects, manifest, 4, GET_PIECE_BYTES + 10)) got.push(Buffer.from(p))
  t.equal(Buffer.concat(got).compare(bytes.subarray(4, 4 + GET_PIECE_BYTES + 10)), 0)
})

t.test('GcPacer requests one scavenge per pace of bytes', async t => {
  const calls: string[] = []
  const p = new GcPacer(o => { calls.push(o.type) }, 100)
  for (let i = 0; i < 25; i++) p.note(10)
  t.same(calls, ['minor', 'minor'])
  t.equal(p.collections, 2)
  const none = new GcPacer(undefined, 100)
  none.note(1000)
  t.equal(none.collections, 0)
})
