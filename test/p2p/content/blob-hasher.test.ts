// The hashing thread of a partial blob, on real files and a real worker thread.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBlobHasher, HASHER_LINGER_MS, HASHER_MAX_THREADS, HASHER_SLOTS, HASHER_THREAD_MIN_BYTES, hasherThreadCount, spareSlotCount } from '../../../p2p/content/blob-hasher.js'

const PIECE = 1024 * 1024

async function blank (dir: string, name: string, size: number): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, new Uint8Array(0))
  await truncate(path, size)
  return path
}

const hashOf = (b: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(b).digest())

t.test('pieces are checked, written and hashed whole; slot buffers are reused across blobs and dropped with the last hasher', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-hasher-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const size = HASHER_THREAD_MIN_BYTES + PIECE / 2
  const count = Math.ceil(size / PIECE)
  const data = randomBytes(size)
  const piece = (i: number): Buffer => data.subarray(i * PIECE, Math.min(size, (i + 1) * PIECE))

  const a = createBlobHasher(await blank(dir, 'a', size), size, PIECE, count)
  const b = createBlobHasher(await blank(dir, 'b', size), size, PIECE, count)
  t.ok(a.store !== undefined && b.store !== undefined, 'a blob this large gets a thread')

  // A piece with the wrong hash is neither ok nor written.
  const bad = await a.store!(0, piece(0), hashOf(piece(1)))
  t.same([bad.ok, bad.written], [false, false])
  t.equal(spareSlotCount(), 1, 'its slot came back as a spare')

  // In reverse order (the whole hash reads back what came early), pieces as chunk lists too.
  for (let i = count - 1; i >= 0; i--) {
    const p = piece(i)
    const asList = i % 2 === 0 ? new Uint8ArrayList(p.subarray(0, 1000), p.subarray(1000)) : p
    const r = await a.store!(i, asList, hashOf(p))
    t.ok(r.ok && r.written, `piece ${i} stored`)
  }
  t.ok(spareSlotCount() >= 1 && spareSlotCount() <= HASHER_SLOTS, 'spares are kept while hashers live')
  const before = spareSlotCount()
  // The other blob's first piece takes a spare instead of a new buffer.
  const p = b.store!(0, piece(0), hashOf(piece(0)))
  t.equal(spareSlotCount(), before - 1, 'a second blob reuses a spare slot')
  t.ok((await p).ok)

  // More pieces at once than there are slots, twice: the extra ones wait for a slot and all get through.
  for (const batch of [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]]) {
    const done = await Promise.all(batch.map(async i => await b.store!(i, piece(i), hashOf(piece(i)))))
    t.ok(done.every(r => r.ok && r.written), `pieces ${batch[0]}-${batch[batch.length - 1]} stored ${HASHER_SLOTS} at a time`)
  }
  t.ok(spareSlotCount() <= HASHER_SLOTS, 'no more spares than one hasher\'s slots')

  t.equal(await a.digest(), `sha256:${createHash('sha256').update(data).digest('hex')}`)
  t.ok((await readFile(join(dir, 'a'))).equals(data), 'the file holds the blob')
  t.ok(spareSlotCount() > 0, 'one hasher still lives: spares stay')
  await b.terminate()
  // Dropped on the thread's exit event, which comes a moment after terminate.
  for (let i = 0; i < 100 && spareSlotCount() > 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(spareSlotCount(), 0, 'no spare is held once no hasher is alive')
})

t.test('blobs share the hashing threads; a terminated blob leaves the others on its thread working; an idle thread is reused, then exits', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-hasher-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const size = HASHER_THREAD_MIN_BYTES + Math.floor(PIECE / 3)
  const count = Math.ceil(size / PIECE)
  const blobs = [randomBytes(size), randomBytes(size), randomBytes(size)]
  const piece = (b: Buffer, i: number): Buffer => b.subarray(i * PIECE, Math.min(size, (i + 1) * PIECE))
  const hashers = await Promise.all(['a', 'b', 'c'].map(async name => createBlobHasher(await blank(dir, name, size), size, PIECE, count)))
  const [a, b, c] = hashers as [typeof hashers[0], typeof hashers[0], typeof hashers[0]]
  t.ok(hasherThreadCount() >= 1 && hasherThreadCount() <= HASHER_MAX_THREADS, `${hasherThreadCount()} thread(s) for 3 blobs, at most ${HASHER_MAX_THREADS}`)

  // Pieces of the three blobs interleaved, in reverse order; c is terminated halfway.
  for (let i = count - 1; i >= 0; i--) {
    if (i === Math.floor(count / 2)) await c.terminate()
    const live = i > Math.floor(count / 2) ? [a, b, c] : [a, b]
    const results = await Promise.all(live.map(async (h, k) => await h.store!(i, piece(blobs[k]!, i), hashOf(piece(blobs[k]!, i)))))
    t.ok(results.every(r => r.ok && r.written), `piece ${i} of ${live.length} blobs stored`)
  }
  await t.rejects(c.store!(0, piece(blobs[2]!, 0), hashOf(piece(blobs[2]!, 0))), /closed/, 'a terminated blob takes no more pieces')
  t.equal(await a.digest(), `sha256:${createHash('sha256').update(blobs[0]!).digest('hex')}`)
  t.equal(await b.digest(), `sha256:${createHash('sha256').update(blobs[1]!).digest('hex')}`)
  t.ok((await readFile(join(dir, 'b'))).equals(blobs[1]!), 'the file holds the blob')

  // No blob left: the threads linger, and a new blob takes one of them.
  const idle = hasherThreadCount()
  t.ok(idle >= 1, 'idle threads linger')
  const d = createBlobHasher(await blank(dir, 'd', size), size, PIECE, count)
  t.equal(hasherThreadCount(), idle, 'a blob started meanwhile reuses a lingering thread')
  t.ok((await d.store!(0, piece(blobs[0]!, 0), hashOf(piece(blobs[0]!, 0)))).ok)
  await d.terminate()
  for (let waited = 0; hasherThreadCount() > 0 && waited < HASHER_LINGER_MS + 5000; waited += 100) await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(hasherThreadCount(), 0, `threads with no blob exit after ${HASHER_LINGER_MS} ms`)
})
