import t from 'tap'
import { CoarseDeadline } from '../../agent/raft/coarse-deadline.js'

t.test('calls within one slot share a signal; stop() aborts every live one with its reason', async t => {
  const d = new CoarseDeadline(60_000, 60_000)
  const a = d.signal()
  const b = d.signal()
  t.equal(a, b, 'one signal for calls in the same slot')
  t.notOk(a.aborted)
  const reason = new Error('stopped')
  d.stop(reason)
  t.ok(a.aborted, 'stop aborts it')
  t.equal(a.reason, reason)
  const c = d.signal()
  t.not(c, a, 'a signal after stop is a new one')
  t.notOk(c.aborted)
  d.stop(reason)
})

t.test('a signal fires TimeoutError once its time has passed', async t => {
  const d = new CoarseDeadline(1, 1)
  const s = d.signal()
  // The deadline's timer is unref'd (it must not hold an agent open); this one keeps the test alive meanwhile.
  const keep = setInterval(() => {}, 1000)
  await new Promise<void>(resolve => { s.addEventListener('abort', () => { resolve() }, { once: true }) })
  clearInterval(keep)
  t.equal((s.reason as Error).name, 'TimeoutError')
  t.not(d.signal(), s, 'the next call gets a new signal')
  d.stop(new Error('done'))
})
