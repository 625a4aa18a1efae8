import t from 'tap'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chunkBuffer, chunkFile, chunkStream, DEFAULT_CDC, giveWindow, takeWindow, type CdcParams } from '../../../p2p/content/fastcdc.js'
import { WASM_WINDOWS } from '../../../p2p/content/cdc-wasm.js'

const P: CdcParams = { minSize: 2048, avgSize: 8192, maxSize: 32768 }

function pseudoRandom (n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  let off = 0
  let i = 0
  while (off < n) {
    const block = createHash('sha256').update(`${seed}:${i++}`).digest()
    out.set(block.subarray(0, Math.min(32, n - off)), off)
    off += 32
  }
  return out
}

const digests = (cs: Uint8Array[]): string[] => cs.map(c => createHash('sha256').update(c).digest('hex'))

t.test('chunks cover the input, respect min/max, average near the target', async t => {
  const data = pseudoRandom(2_000_000, 1)
  const cs = chunkBuffer(data, P)
  t.equal(cs.reduce((n, c) => n + c.length, 0), data.length)
  t.ok(cs.slice(0, -1).every(c => c.length >= P.minSize && c.length <= P.maxSize), 'sizes within bounds')
  const avg = data.length / cs.length
  t.ok(avg > P.avgSize * 0.6 && avg < P.avgSize * 1.6, `average chunk ${avg.toFixed(0)} near ${P.avgSize}`)
  t.same(digests(chunkBuffer(data, P)), digests(cs), 'deterministic')
})

t.test('an insertion near the start changes only the chunks around it', async t => {
  const data = pseudoRandom(1_000_000, 2)
  const shifted = new Uint8Array(data.length + 100)
  shifted.set(data.subarray(0, 5000))
  shifted.set(pseudoRandom(100, 99), 5000)
  shifted.set(data.subarray(5000), 5100)
  const a = new Set(digests(chunkBuffer(data, P)))
  const b = digests(chunkBuffer(shifted, P))
  const shared = b.filter(d => a.has(d)).length
  t.ok(shared >= b.length - 3, `${shared} of ${b.length} chunks shared after inserting 100 bytes`)
})

t.test('chunking a file gives the same chunks as chunking the buffer', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-cdc-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const data = pseudoRandom(700_001, 3)
  await writeFile(join(dir, 'f'), data)
  const fromFile: Uint8Array[] = []
  for await (const c of chunkFile(join(dir, 'f'), P)) fromFile.push(c)
  t.same(digests(fromFile), digests(chunkBuffer(data, P)))
})

t.test('property: any input is covered exactly, within bounds', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 100_000 }), fc.integer({ min: 0, max: 5 }), (data, k) => {
    const p = { minSize: 64 << k, avgSize: 256 << k, maxSize: 1024 << k }
    const cs = chunkBuffer(data, p)
    if (cs.reduce((n, c) => n + c.length, 0) !== data.length) throw new Error('not covered')
    if (cs.some(c => c.length > p.maxSize || c.length === 0)) throw new Error('out of bounds')
  }), { numRuns: 100, seed: 5 })
  t.throws(() => chunkBuffer(new Uint8Array(1), { minSize: 10, avgSize: 5, maxSize: 100 }), RangeError)
})

t.test('chunking a stream cuts where chunking the buffer cuts, whatever the pieces it arrives in', async t => {
  await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 300_000 }), fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 8 }), fc.boolean(), async (len, cuts, reuse) => {
    const data = pseudoRandom(len, len % 7)
    async function * pieces (): AsyncIterable<Uint8Array> {
      let pos = 0
      for (let i = 0; pos < data.length; i++) { const n = cuts[i % cuts.length]!; yield data.subarray(pos, pos + n); pos += n }
    }
    const got: Uint8Array[] = []
    // Chunks are views into the window: copied before the next is asked for.
    for await (const c of chunkStream(pieces(), P, reuse ? new Uint8Array(P.maxSize * 3) : undefined)) got.push(Uint8Array.from(c))
    if (JSON.stringify(digests(got)) !== JSON.stringify(digests(chunkBuffer(data, P)))) throw new Error(`stream cut differs for ${len} bytes in pieces ${cuts.join(',')}`)
  }), { numRuns: 60, seed: 11 })
  t.pass('stream cuts match')
})

t.test('a window in WebAssembly memory cuts where the JS loop cuts', async t => {
  // Every window the module has, then one beyond them (a plain buffer, cut by the JS loop).
  const windows = Array.from({ length: WASM_WINDOWS + 1 }, () => takeWindow(P.maxSize * 2))
  t.equal(new Set(windows.slice(0, WASM_WINDOWS).map(w => w.buffer)).size, 1, 'the first windows share the module\'s memory')
  t.not(windows[WASM_WINDOWS]!.buffer, windows[0]!.buffer, 'one more is a buffer of its own')
  await fc.assert(fc.asyncProperty(fc.integer({ min: 0, max: 300_000 }), fc.integer({ min: 1, max: 70_000 }), fc.nat(WASM_WINDOWS), async (len, piece, w) => {
    const data = pseudoRandom(len, len % 5)
    async function * pieces (): AsyncIterable<Uint8Array> { for (let o = 0; o < data.length; o += piece) yield data.subarray(o, o + piece) }
    const got: Uint8Array[] = []
    for await (const c of chunkStream(pieces(), P, windows[w])) got.push(Uint8Array.from(c))
    if (JSON.stringify(digests(got)) !== JSON.stringify(digests(chunkBuffer(data, P)))) throw new Error(`window ${w}: cut differs for ${len} bytes in pieces of ${piece}`)
  }), { numRuns: 40, seed: 17 })
  // The default parameters too (4 MiB largest chunk: an 8 MiB window, the largest the module holds).
  const big = pseudoRandom(12 * 1024 * 1024, 3)
  const got: Uint8Array[] = []
  async function * one (): AsyncIterable<Uint8Array> { yield big }
  for await (const c of chunkStream(one(), DEFAULT_CDC, windows[0])) got.push(Uint8Array.from(c))
  t.same(digests(got), digests(chunkBuffer(big, DEFAULT_CDC)), 'default parameters: the same cuts')
  for (const w of windows) giveWindow(w)
})
