import t from 'tap'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { BlobStore } from '../../../p2p/content/blob-store.js'
import { BlobRefs } from '../../../p2p/content/blob-refs.js'
import { sha256Digest } from '../../../p2p/content/digest.js'
import { hashPiece } from '../../../p2p/content/pieces.js'

const here = dirname(fileURLToPath(import.meta.url))

async function tempRoot (t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-blobs-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  return dir
}

async function collect (s: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of s) parts.push(c)
  return Buffer.concat(parts)
}

t.test('put, has, stat, ranges, list, delete', async t => {
  const store = await BlobStore.open({ root: await tempRoot(t) })
  const data = randomBytes(100_000)
  const d = sha256Digest(data)
  const info = await store.put(data, d)
  t.equal(info.size, 100_000)
  t.ok(await store.has(d))
  t.equal((await store.stat(d))?.size, 100_000)
  t.same(await collect(store.createReadStream(d, { start: 10, end: 19 })), data.subarray(10, 20))
  t.same(Buffer.from(await store.readRange(d, 99_990, 10)), data.subarray(99_990))
  const into = new Uint8Array(16).fill(7)
  const read = await store.readRange(d, 500, 10, into)
  t.equal(read.buffer, into.buffer, 'read into the buffer given')
  t.same(Buffer.from(read), data.subarray(500, 510))
  t.same([...into.subarray(10)], [7, 7, 7, 7, 7, 7], 'bytes past the range untouched')
  await t.rejects(store.readRange(d, 0, 17, into), RangeError, 'a buffer too small is refused')
  const fh = await store.openRead(d)
  t.equal((await fh.stat()).size, 100_000, 'openRead: a handle to the blob')
  await fh.close()
  t.same((await store.list()).map(b => b.digest), [d])
  t.ok(await store.delete(d))
  t.notOk(await store.has(d))
})

t.test('a put whose bytes do not match the digest leaves nothing', async t => {
  const root = await tempRoot(t)
  const store = await BlobStore.open({ root })
  const data = randomBytes(1000)
  await t.rejects(store.put(data, sha256Digest(Buffer.from('other'))), { name: 'DigestMismatchError' })
  await t.rejects(store.put(data, 'sha256:nothex'), { name: 'InvalidDigestError' })
  await t.rejects(store.put(data, sha256Digest(data), { size: 999 }), { name: 'SizeMismatchError' })
  t.same(await store.list(), [])
  t.same(await readdir(join(root, 'tmp')), [])
})

t.test('pins keep blobs through gc; quota evicts unreferenced blobs least recently used first', async t => {
  const store = await BlobStore.open({ root: await tempRoot(t), quotaBytes: 3000 })
  const blobs = [randomBytes(1000), randomBytes(1000), randomBytes(1000)]
  const ds = blobs.map(b => sha256Digest(b))
  for (const [i, b] of blobs.entries()) { await store.put(b, ds[i]!); await new Promise(resolve => setTimeout(resolve, 5)) }
  await store.pin('image:a', [ds[0]!])
  await store.readRange(ds[1]!, 0, 1) // ds[1] now more recent than ds[2]
  const extra = randomBytes(1000)
  await store.put(extra, sha256Digest(extra))
  t.ok(await store.has(ds[0]!), 'pinned blob kept')
  t.ok(await store.has(ds[1]!), 'recently used blob kept')
  t.notOk(await store.has(ds[2]!), 'least recently used unreferenced blob evicted')
  const big = randomBytes(2500)
  await t.rejects(store.put(big, sha256Digest(big), { size: 2500 }), { name: 'QuotaExceededError' })
  t.same((await store.gc()).sort(), [ds[1]!, sha256Digest(extra)].sort())
  t.ok(await store.has(ds[0]!))
  await store.unpin('image:a')
  t.same(await store.gc(), [ds[0]!])
})

t.test('pins and blobs survive reopening', async t => {
  const root = await tempRoot(t)
  const a = await BlobStore.open({ root })
  const data = randomBytes(5000)
  const d = sha256Digest(data)
  await a.put(data, d)
  await a.pin('object:x', [d])
  await a.close()
  const b = await BlobStore.open({ root })
  t.ok(await b.has(d))
  t.equal(b.refCount(d), 1)
})

t.test('pins made while refs.json is being written share the next write, and all are kept', async t => {
  const root = await tempRoot(t)
  const digests = Array.from({ length: 40 }, (_, i) => sha256Digest(Buffer.from(`blob ${i}`)))
  const refs = await BlobRefs.load(join(root, 'refs.json'), root)
  await Promise.all(digests.map(async (d, i) => { await refs.pin(`object:${i}`, [d]) }))
  t.ok(refs.writes >= 1 && refs.writes <= 2, `40 pins at once share ${refs.writes} write(s) of refs.json`)
  await refs.unpin('object:0')
  const back = await BlobRefs.load(join(root, 'refs.json'), root)
  t.same(digests.map(d => back.count(d)), [0, ...digests.slice(1).map(() => 1)], 'every pin, and the unpin, on disk')
})

t.test('piece manifest is derived once and matches the pieces', async t => {
  const store = await BlobStore.open({ root: await tempRoot(t), pieceSize: 16 * 1024 })
  const data = randomBytes(40 * 1024)
  const d = sha256Digest(data)
  await store.put(data, d)
  const m = await store.pieceManifest(d)
  t.equal(m.hashes.length, 3 * 32)
  t.same(m.hashes.subarray(64), hashPiece(data.subarray(32 * 1024)))
  t.same(await store.pieceManifest(d), m)
})

t.test('partial blob: pieces persist across reopen, complete verifies and publishes', async t => {
  const root = await tempRoot(t)
  const data = randomBytes(50 * 1024)
  const d = sha256Digest(data)
  const ps = 16 * 1024
  const s1 = await BlobStore.open({ root })
  const p1 = await s1.openPartial(d, data.length, ps)
  await p1.writePiece(0, data.subarray(0, ps), hashPiece(data.subarray(0, ps)))
  await p1.writePiece(2, data.subarray(2 * ps, 3 * ps), hashPiece(data.subarray(2 * ps, 3 * ps)))
  await s1.close()
  t.notOk(await s1.has(d))
  const s2 = await BlobStore.open({ root })
  t.same(await s2.listPartials(), [d])
  const p2 = await s2.openPartial(d, data.length, ps)
  t.equal(p2.have.count(), 2)
  t.same(Buffer.from(await p2.readPiece(2)), data.subarray(2 * ps, 3 * ps))
  const into = new Uint8Array(ps)
  const piece = await p2.readPiece(2, into)
  t.equal(piece.buffer, into.buffer, 'a piece read into the buffer given')
  t.same(Buffer.from(piece), data.subarray(2 * ps, 3 * ps))
  await t.rejects(p2.readPiece(2, new Uint8Array(ps - 1)), RangeError, 'a buffer too small is refused')
  await p2.writePiece(1, data.subarray(ps, 2 * ps), hashPiece(data.subarray(ps, 2 * ps)))
  await p2.writePiece(3, data.subarray(3 * ps), hashPiece(data.subarray(3 * ps)))
  await p2.complete()
  t.ok(await s2.has(d))
  t.same(await s2.listPartials(), [])
  t.same(Buffer.from(await s2.readAll(d)), data)
})

t.test('a partial whose have-bitfield cannot be persisted says so, and closing still completes', async t => {
  const root = await tempRoot(t)
  const data = randomBytes(32 * 1024)
  const d = sha256Digest(data)
  const ps = 16 * 1024
  const logged: string[] = []
  const s = await BlobStore.open({ root, log: m => { logged.push(m) } })
  const p = await s.openPartial(d, data.length, ps)
  await p.writePiece(0, data.subarray(0, ps), hashPiece(data.subarray(0, ps)))
  // The store's tmp/ becomes a file: the atomic write of the state file cannot happen.
  await rm(join(root, 'tmp'), { recursive: true, force: true })
  await writeFile(join(root, 'tmp'), 'in the way')
  await s.close()
  t.match(logged.join('\n'), new RegExp(`partial ${d}: persisting its have-bitfield failed`), 'the failed flush is told with the blob it concerns')
})

t.test('partial blob with a wrong piece fails completion and resets', async t => {
  const store = await BlobStore.open({ root: await tempRoot(t) })
  const data = randomBytes(20 * 1024)
  const d = sha256Digest(data)
  const p = await store.openPartial(d, data.length, 16 * 1024)
  const bad = randomBytes(16 * 1024)
  await p.writePiece(0, bad, hashPiece(bad))
  await p.writePiece(1, data.subarray(16 * 1024), hashPiece(data.subarray(16 * 1024)))
  await t.rejects(p.complete(), { name: 'DigestMismatchError' })
  t.equal(p.have.count(), 0)
  t.notOk(await store.has(d))
  await store.close()
})

async function runUntilKilled (args: string[]): Promise<void> {
  const child = spawn(process.execPath, [join(here, 'fixtures', 'blob-writer.js'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => { if (b.toString().includes('writing')) resolve() })
    child.on('exit', code => reject(new Error(`writer exited early with ${code}`)))
  })
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

t.test('kill -9 during put leaves no visible blob', async t => {
  const root = await tempRoot(t)
  const digest = sha256Digest(Buffer.from('never finished'))
  await runUntilKilled([root, 'put', digest, '0'])
  t.not((await readdir(join(root, 'tmp'))).length, 0, 'the killed writer left a temp file')
  const store = await BlobStore.open({ root })
  t.notOk(await store.has(digest))
  t.same(await store.list(), [])
  t.same(await readdir(join(root, 'blobs', 'sha256')), [])
  t.same(await readdir(join(root, 'tmp')), [], 'temp files cleaned on open')
})

t.test('kill -9 during a piece-wise write: nothing visible, resume keeps only whole pieces', async t => {
  const root = await tempRoot(t)
  const size = 10 * 65536 + 123
  const data = new Uint8Array(size)
  for (let i = 0; i < size; i++) data[i] = (i * 7 + 3) & 0xff
  const digest = sha256Digest(data)
  await runUntilKilled([root, 'partial', digest, String(size)])
  const store = await BlobStore.open({ root })
  t.notOk(await store.has(digest))
  t.same(await readdir(join(root, 'blobs', 'sha256')), [])
  const p = await store.openPartial(digest, size, 65536)
  const held = p.have.count()
  t.ok(held >= 3 && held < p.pieceCount, `resumed with ${held} pieces`)
  for (let i = 0; i < p.pieceCount; i++) {
    const piece = data.subarray(i * 65536, Math.min(size, (i + 1) * 65536))
    if (p.have.get(i)) t.same(await p.readPiece(i), piece, `held piece ${i} is intact`)
    else await p.writePiece(i, piece, hashPiece(piece))
  }
  await p.complete()
  t.ok(await store.has(digest))
})

t.test('large partial blobs are hashed on a worker thread as pieces arrive, in any order', async t => {
  const store = await BlobStore.open({ root: await tempRoot(t) })
  const ps = 1024 * 1024
  const data = randomBytes(17 * ps + 5)
  const d = sha256Digest(data)
  const p = await store.openPartial(d, data.length, ps)
  const order = Array.from({ length: p.pieceCount }, (_, i) => i).reverse()
  for (const i of order) {
    const piece = data.subarray(i * ps, Math.min(data.length, (i + 1) * ps))
    await p.writePiece(i, piece, hashPiece(piece))
  }
  await p.complete()
  t.ok(await store.has(d))
  // And a wrong piece is caught by the same path.
  const other = randomBytes(17 * ps)
  const od = sha256Digest(other)
  const q = await store.openPartial(od, other.length, ps)
  for (let i = 0; i < q.pieceCount; i++) {
    const piece = Buffer.from(other.subarray(i * ps, (i + 1) * ps))
    if (i === 9) piece[100] = (piece[100] as number) ^ 1
    await q.writePiece(i, piece, hashPiece(piece))
  }
  await t.rejects(q.complete(), { name: 'DigestMismatchError' })
  t.notOk(await store.has(od))
  await store.close()
})

t.test('storePiece checks a piece before it is written, on the hashing thread and inline', async t => {
  const store = await BlobStore.open({ root: await tempRoot(t) })
  const ps = 1024 * 1024
  for (const size of [17 * ps + 5, 3 * ps + 5]) { // thread, inline
    const data = randomBytes(size)
    const d = sha256Digest(data)
    const p = await store.openPartial(d, size, ps)
    const pieceOf = (i: number): Buffer => Buffer.from(data.subarray(i * ps, Math.min(size, (i + 1) * ps)))
    const hashes = Array.from({ length: p.pieceCount }, (_, i) => hashPiece(pieceOf(i)))
    // A wrong byte under the right expected hash: refused, nothing stored.
    const bad = pieceOf(1)
    bad[7] = (bad[7] as number) ^ 0xff
    t.equal((await p.storePiece(1, bad, hashes[1])).ok, false, `bad piece refused (${size} bytes)`)
    t.notOk(p.have.get(1))
    // A short piece is refused even with no hash to check against.
    t.equal((await p.storePiece(2, pieceOf(2).subarray(1), undefined)).ok, false)
    // Pieces given as lists of chunks, in an order that is not front to back.
    const order = [...Array(p.pieceCount).keys()].sort((a, b) => (a % 3) - (b % 3) || b - a)
    for (const i of order) {
      const piece = pieceOf(i)
      const chunks = [piece.subarray(0, 1000), piece.subarray(1000, 70_000), piece.subarray(70_000)]
      const list = { byteLength: piece.length, subarray: () => Buffer.concat(chunks), [Symbol.iterator]: () => chunks[Symbol.iterator]() }
      const r = await p.storePiece(i, list, hashes[i])
      t.ok(r.ok && Buffer.from(r.hash).equals(Buffer.from(hashes[i] as Uint8Array)), `piece ${i} stored`)
    }
    t.ok(p.isComplete())
    await p.complete()
    t.same(Buffer.from(await store.readAll(d)), data, `assembled blob is the original (${size} bytes)`)
  }
  await store.close()
})
