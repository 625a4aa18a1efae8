import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { RaftStorage, MemoryStorage, CompactedError, RaftStorageError, type Entry, type LogStorage } from '../../consensus/index.js'

const dirs: string[] = []
function tmp (): string {
  const d = mkdtempSync(join(tmpdir(), 'raft-storage-'))
  dirs.push(d)
  return d
}
t.teardown(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })

const enc = new TextEncoder()
function ents (from: number, to: number, term: number, tag = ''): Entry[] {
  const out: Entry[] = []
  for (let i = from; i <= to; i++) out.push({ type: 'normal', term, index: i, data: enc.encode(`${tag}${i}`) })
  return out
}
const texts = (es: Entry[] | null): string[] => (es ?? []).map(e => e.type === 'normal' ? new TextDecoder().decode(e.data) : e.change.node)

async function sharedContract (t: Test, open: () => Promise<LogStorage>): Promise<void> {
  const s = await open()
  t.equal(s.lastIndex(), 0)
  t.equal(s.firstIndex(), 1)
  await s.save({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: ents(1, 10, 1) })
  t.equal(s.lastIndex(), 10)
  t.equal(s.term(7), 1)
  // A conflicting suffix is truncated in the same write.
  await s.save({ entries: ents(6, 8, 2, 'x') })
  t.equal(s.lastIndex(), 8)
  t.equal(s.term(6), 2)
  t.same(texts(s.entries(4, 9, 1 << 20)), ['4', '5', 'x6', 'x7', 'x8'])
  t.equal(s.entries(1, 9, 1)?.length, 1, 'maxBytes returns at least one entry')
  await s.compact({ meta: { index: 5, term: 1, confState: { voters: ['a'], learners: [] } }, data: enc.encode('snap5') })
  t.equal(s.firstIndex(), 6)
  t.equal(s.term(5), 1)
  t.throws(() => s.term(4), CompactedError)
  t.throws(() => s.entries(5, 7, 100), CompactedError)
  // Installing a leader's snapshot replaces the log.
  await s.save({ entries: [], snapshot: { meta: { index: 20, term: 3, confState: { voters: ['a', 'b'], learners: [] } }, data: enc.encode('snap20') }, hardState: { term: 3, vote: 'b', commit: 20 } })
  t.equal(s.firstIndex(), 21)
  t.equal(s.lastIndex(), 20)
  t.same(s.initialState(), { hardState: { term: 3, vote: 'b', commit: 20 }, confState: { voters: ['a', 'b'], learners: [] } })
  await s.save({ entries: ents(21, 25, 3) })
  t.equal(s.lastIndex(), 25)
  await s.close()
}

t.test('MemoryStorage contract', async t => {
  const m = new MemoryStorage()
  await sharedContract(t, async () => m)
})

t.test('RaftStorage contract and recovery after reopen', async t => {
  const dir = tmp()
  await sharedContract(t, async () => await RaftStorage.open(dir))
  const s = await RaftStorage.open(dir)
  t.equal(s.firstIndex(), 21)
  t.equal(s.lastIndex(), 25)
  t.same(s.initialState().hardState, { term: 3, vote: 'b', commit: 20 })
  t.same(new TextDecoder().decode(s.snapshot().data), 'snap20')
  t.same(texts(s.entries(21, 26, 1 << 20)), ['21', '22', '23', '24', '25'])
  await s.close()
})

t.test('RaftStorage keeps a bounded window in memory and reads older entries back from disk', async t => {
  const dir = tmp()
  let s = await RaftStorage.open(dir, { windowEntries: 50, readCacheEntries: 100, fetchBatch: 40 })
  for (let i = 0; i < 10; i++) await s.save({ entries: ents(i * 100 + 1, i * 100 + 100, 1) })
  t.equal(s.lastIndex(), 1000)
  t.ok(s.memoryEntries() <= 150, `memory holds ${s.memoryEntries()} entries`)
  t.same(texts(s.entries(990, 993, 1 << 20)), ['990', '991', '992'])
  let woke = 0
  s.onAvailable = () => { woke++ }
  t.equal(s.entries(10, 20, 1 << 20), null, 'old entries are not in memory')
  await new Promise<void>(resolve => { const iv = setInterval(() => { if (woke > 0) { clearInterval(iv); resolve() } }, 2) })
  t.same(texts(s.entries(10, 13, 1 << 20)), ['10', '11', '12'])
  t.equal(s.term(10), 1, 'terms are always in memory')
  await s.close()
  // Reopen: only the window is loaded into memory.
  s = await RaftStorage.open(dir, { windowEntries: 50 })
  t.equal(s.lastIndex(), 1000)
  t.ok(s.memoryEntries() <= 50)
  t.equal(s.term(1), 1)
  await s.close()
})

t.test('compaction can keep trailing entries below the snapshot for followers that are a little behind', async t => {
  for (const open of [async () => new MemoryStorage(), async () => await RaftStorage.open(tmp())]) {
    const s: LogStorage = await open()
    await s.save({ entries: [...ents(1, 10, 1), ...ents(11, 20, 2)], hardState: { term: 2, vote: '', commit: 20 } })
    await s.compact({ meta: { index: 15, term: 2, confState: { voters: ['a'], learners: [] } }, data: enc.encode('s15') }, 6)
    t.equal(s.snapshot().meta.index, 15)
    t.equal(s.firstIndex(), 10, 'entries 10.. kept')
    t.equal(s.term(9), 1, 'term of the entry before the first kept')
    t.throws(() => s.term(8), CompactedError)
    t.same(texts(s.entries(10, 13, 1 << 20)), ['10', '11', '12'])
    await s.close()
  }
  const dir = tmp()
  const s = await RaftStorage.open(dir)
  await s.save({ entries: ents(1, 30, 1) })
  await s.compact({ meta: { index: 25, term: 1, confState: { voters: ['a'], learners: [] } }, data: enc.encode('s25') }, 5)
  await s.close()
  const r = await RaftStorage.open(dir)
  t.equal(r.firstIndex(), 21)
  t.equal(r.term(20), 1)
  t.equal(r.snapshot().meta.index, 25)
  t.equal(r.lastIndex(), 30)
  await r.close()
})

t.test('RaftStorage rejects corrupt data with a typed error', async t => {
  const dir = tmp()
  const s = await RaftStorage.open(dir)
  await s.save({ entries: ents(1, 3, 1), hardState: { term: 1, vote: '', commit: 3 } })
  await s.close()
  const db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.put('e0000000000000002', new Uint8Array([0xff, 0x00, 0x13]))
  await db.close()
  await t.rejects(RaftStorage.open(dir), RaftStorageError)
})
