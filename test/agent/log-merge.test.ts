// The merge of replicas' log streams: by time when they end, as they come when following.
import t from 'tap'
import fc from 'fast-check'
import { mergeAsArrived, mergeByTime } from '../../agent/log-merge.js'

async function * from<T> (xs: T[], delayMs = 0): AsyncGenerator<T> {
  for (const x of xs) {
    if (delayMs > 0) await new Promise(resolve => setTimeout(resolve, delayMs))
    yield x
  }
}
async function all<T> (it: AsyncIterable<T>): Promise<T[]> { const out: T[] = []; for await (const x of it) out.push(x); return out }

t.test('mergeByTime yields every line once, in time order', async t => {
  await fc.assert(fc.asyncProperty(fc.array(fc.array(fc.nat(1000), { maxLength: 20 }), { maxLength: 5 }), async lists => {
    const sources = lists.map((l, s) => [...l].sort((a, b) => a - b).map((time, i) => ({ time, id: `${s}-${i}` })))
    const merged = await all(mergeByTime(sources.map(x => from(x))))
    t.equal(merged.length, sources.flat().length)
    for (let i = 1; i < merged.length; i++) if (merged[i]!.time < merged[i - 1]!.time) return false
    return new Set(merged.map(m => m.id)).size === merged.length
  }), { numRuns: 100 })
})

t.test('mergeAsArrived does not wait for a slow source', async t => {
  let release: () => void = () => {}
  const gate = new Promise<void>(resolve => { release = resolve })
  async function * slow (): AsyncGenerator<string> { await gate; yield 'slow' }
  const it = mergeAsArrived([slow(), from(['a', 'b'], 5)])[Symbol.asyncIterator]()
  t.same([(await it.next()).value, (await it.next()).value], ['a', 'b'], 'the fast source first')
  release()
  t.equal((await it.next()).value, 'slow', 'then the slow one')
  t.equal((await it.next()).done, true, 'ends when both end')
})

t.test('mergeAsArrived: an error in one source ends the merge with it', async t => {
  async function * bad (): AsyncGenerator<string> { yield 'x'; throw new Error('stream broke') }
  await t.rejects(all(mergeAsArrived([bad(), from(['y'])])), /stream broke/)
})
