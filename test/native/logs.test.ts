import t from 'tap'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MAX_LINE_BYTES, readLogs, RotatingLogWriter } from '../../native/logs.js'
import { collect } from './compliance.js'

async function dir (t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'bolt-logs-'))
  t.teardown(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

t.test('lines are split per stream, partial lines wait for their end', async t => {
  const path = join(await dir(t), 'c.log')
  const w = new RotatingLogWriter(path, { maxBytes: 1 << 20, maxFiles: 3 })
  await w.open()
  w.feed('stdout', 'one\ntw')
  w.feed('stderr', 'err\n')
  w.feed('stdout', 'o\nthree')
  await w.close()
  const got = (await collect(readLogs(path, { maxFiles: 3 }))).map(r => `${r.stream}:${r.line}`)
  t.same(got, ['stdout:one', 'stderr:err', 'stdout:two', 'stdout:three'])
})

t.test('size-based rotation keeps maxFiles files, oldest dropped, order kept', async t => {
  const d = await dir(t)
  const path = join(d, 'c.log')
  const w = new RotatingLogWriter(path, { maxBytes: 400, maxFiles: 3 })
  await w.open()
  for (let i = 0; i < 100; i++) w.feed('stdout', `line ${i}\n`)
  await w.close()
  t.same((await readdir(d)).sort(), ['c.log', 'c.log.1', 'c.log.2'])
  const lines = (await collect(readLogs(path, { maxFiles: 3 }))).map(r => r.line)
  t.ok(lines.length < 100 && lines.length > 10, `kept the newest ${lines.length}`)
  t.equal(lines[lines.length - 1], 'line 99')
  const nums = lines.map(l => Number(l.split(' ')[1]))
  t.same(nums, [...nums].sort((a, b) => a - b), 'in order across rotated files')
})

t.test('a very long line is cut into bounded records', async t => {
  const path = join(await dir(t), 'c.log')
  const w = new RotatingLogWriter(path, { maxBytes: 1 << 20, maxFiles: 2 })
  await w.open()
  w.feed('stdout', 'x'.repeat(MAX_LINE_BYTES * 2 + 10))
  await w.close()
  const recs = await collect(readLogs(path, { maxFiles: 2 }))
  t.same(recs.map(r => r.line.length), [MAX_LINE_BYTES, MAX_LINE_BYTES, 10])
})

t.test('follow sees new lines across a rotation and ends when the writer closes', async t => {
  const path = join(await dir(t), 'c.log')
  const w = new RotatingLogWriter(path, { maxBytes: 300, maxFiles: 5 })
  await w.open()
  w.feed('stdout', 'first\n')
  const seen: string[] = []
  const reader = (async () => { for await (const r of readLogs(path, { maxFiles: 5, follow: true, writer: w })) seen.push(r.line) })()
  for (let i = 0; i < 40; i++) {
    w.feed('stdout', `n${i}\n`)
    await new Promise(resolve => setImmediate(resolve))
  }
  await w.close()
  await reader
  t.same(seen, ['first', ...Array.from({ length: 40 }, (_, i) => `n${i}`)])
})

t.test('follow stops on abort', async t => {
  const path = join(await dir(t), 'c.log')
  const w = new RotatingLogWriter(path, { maxBytes: 1000, maxFiles: 2 })
  await w.open()
  const ac = new AbortController()
  const reader = collect(readLogs(path, { maxFiles: 2, follow: true, writer: w, signal: ac.signal }))
  setTimeout(() => { ac.abort() }, 20)
  t.same(await reader, [])
  await w.close()
})
