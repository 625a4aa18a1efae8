import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WriteTimeline, messageIndex } from '../../agent/raft/timeline.js'

t.test('marks are kept in order, bounded, and written as one line each', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'bolt-timeline-test-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  let now = 100
  const tl = new WriteTimeline(join(dir, 'sub'), 3, () => now++)
  tl.mark('write', 0)
  tl.mark('ready', 7)
  tl.mark('written', 7)
  tl.mark('dropped', 8) // over the bound
  t.equal(tl.size, 3)
  t.equal(tl.text(42), '100 42 write 0\n101 42 ready 7\n102 42 written 7\n')
  const file = await tl.dump(42)
  t.equal(file, join(dir, 'sub', 'timeline-42.txt'))
  t.equal(await readFile(file, 'utf8'), tl.text(42))
})

t.test('on only when BOLT_RAFT_TIMELINE names a directory', async t => {
  t.equal(WriteTimeline.fromEnv({}), undefined)
  t.equal(WriteTimeline.fromEnv({ BOLT_RAFT_TIMELINE: '' }), undefined)
  t.equal(WriteTimeline.fromEnv({ BOLT_RAFT_TIMELINE: '/tmp/x' })?.dir, '/tmp/x')
})

t.test('a message is matched by the log index it is about', async t => {
  const base = { from: 'a', to: 'b', term: 2 }
  t.equal(messageIndex({ ...base, type: 'app', index: 4, logTerm: 2, commit: 3, entries: [{ type: 'normal', term: 2, index: 5, data: new Uint8Array(1) }] }), 5)
  t.equal(messageIndex({ ...base, type: 'app', index: 4, logTerm: 2, commit: 4, entries: [] }), 4)
  t.equal(messageIndex({ ...base, type: 'appResp', index: 5, reject: false, hintIndex: 0, hintTerm: 0 }), 5)
  t.equal(messageIndex({ ...base, type: 'heartbeat', commit: 5 }), 0)
})
