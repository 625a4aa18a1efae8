// The hashing thread of a partial blob, on real files and a real worker thread.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBlobHasher, HASHER_SLOTS, HASHER_THREAD_MIN_BYTES, spareSlotCount } from '../../../p2p/content/blob-hasher.js'

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
