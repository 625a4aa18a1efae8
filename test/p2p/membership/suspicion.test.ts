// Table tests of the Lifeguard suspicion maths (cases from memberlist's
// suspicion_test.go and util_test.go, which the formulas follow).
import t from 'tap'
import {
  Suspicion, expectedConfirmations, remainingSuspicionMs, suspicionBoundMs, suspicionMaxMs, suspicionMinMs
} from '../../../p2p/membership/core/suspicion.js'
import { retransmitLimit, BroadcastQueue } from '../../../p2p/membership/core/broadcast-queue.js'
import { pushPullScale } from '../../../p2p/membership/core/swim-core.js'
import { Awareness } from '../../../p2p/membership/core/awareness.js'
import { LAN, WAN, EDGE, profile, checkConfig, ticksOf, SwimConfigError } from '../../../p2p/membership/profiles.js'

t.test('remainingSuspicionMs: falls from max to min with confirmations', async t => {
  const cases: Array<[confirmations: number, k: number, elapsed: number, min: number, max: number, expected: number]> = [
    [0, 3, 0, 2000, 30000, 30000],
    [1, 3, 2000, 2000, 30000, 14000],
    [2, 3, 3000, 2000, 30000, 4810],
    [3, 3, 4000, 2000, 30000, -2000],
    [4, 3, 5000, 2000, 30000, -3000],
    [5, 3, 10000, 2000, 30000, -8000],
    // k < 1: no confirmations expected, the minimum applies at once
    [0, 0, 0, 2000, 30000, 2000],
    [0, 0, 2500, 2000, 30000, -500]
  ]
  for (const [c, k, elapsed, min, max, expected] of cases) {
    t.equal(remainingSuspicionMs(c, k, elapsed, min, max), expected, `c=${c} k=${k} elapsed=${elapsed}`)
  }
})

t.test('suspicionMinMs: mult · max(1, log10 N) · interval', async t => {
  const cases: Array<[n: number, expectedPerMult: number]> = [[1, 1000], [5, 1000], [10, 1000], [50, 1698], [100, 2000], [500, 2698], [1000, 3000]]
  for (const [n, expected] of cases) t.equal(Math.floor(suspicionMinMs(3, n, 1000) / 3), expected, `n=${n}`)
  t.equal(suspicionMinMs(4, 16, 1000), 4816, 'LAN at 16 members')
  t.equal(suspicionMaxMs(LAN, 16), 6 * 4816)
  t.equal(suspicionBoundMs(LAN, 16), 1000 + 6 * 4816, 'bound = one probe interval + max timeout')
  t.equal(suspicionBoundMs(LAN, 3), 1000 + 6 * 4000)
})

t.test('expectedConfirmations: suspicionMult − 2, or 0 in tiny clusters', async t => {
  const cases: Array<[mult: number, n: number, k: number]> = [[4, 1, 0], [4, 3, 0], [4, 4, 2], [4, 16, 2], [6, 5, 0], [6, 6, 4], [2, 10, 0]]
  for (const [mult, n, k] of cases) t.equal(expectedConfirmations(mult, n), k, `mult=${mult} n=${n}`)
})

t.test('Suspicion: confirmations are counted once per accuser and shorten the timeout', async t => {
  const s = new Suspicion({ from: 'a', incarnation: 1, startTick: 0, k: 2, minMs: 1000, maxMs: 6000, tickMs: 100 })
  t.equal(s.confirm('a'), false, 'the first accuser is not a confirmation')
  t.equal(s.expired(59), false)
  t.equal(s.expired(60), true, 'no confirmations: expires at max')
  t.equal(s.confirm('b'), true)
  t.equal(s.confirm('b'), false, 'same accuser twice is not news')
  // one of two: max − log2/log3 · (max − min) = 6000 − 0.6309·5000 = 2845 ms
  t.equal(s.expired(28), false)
  t.equal(s.expired(29), true)
  t.equal(s.confirm('c'), true)
  t.equal(s.confirm('d'), false, 'beyond k confirmations is not news')
  t.equal(s.confirmationCount, 2)
  t.equal(s.expired(9), false)
  t.equal(s.expired(10), true, 'k confirmations: min')
})

t.test('retransmitLimit: mult · ceil(log10(N + 1))', async t => {
  const cases: Array<[mult: number, n: number, limit: number]> = [[3, 0, 0], [3, 1, 3], [3, 99, 6], [4, 9, 4], [4, 10, 8], [4, 16, 8]]
  for (const [mult, n, limit] of cases) t.equal(retransmitLimit(mult, n), limit, `mult=${mult} n=${n}`)
})

t.test('pushPullScale: slower anti-entropy above 32 members', async t => {
  const cases: Array<[n: number, ticks: number]> = [[1, 300], [32, 300], [33, 600], [64, 600], [65, 900], [1024, 1800]]
  for (const [n, ticks] of cases) t.equal(pushPullScale(300, n), ticks, `n=${n}`)
})

t.test('Awareness: bounded score scales timeouts', async t => {
  const a = new Awareness(8)
  t.equal(a.scale(10), 10)
  a.applyDelta(3)
  t.equal(a.scale(10), 40)
  a.applyDelta(100)
  t.equal(a.getHealthScore(), 7, 'capped below the max multiplier')
  a.applyDelta(-100)
  t.equal(a.getHealthScore(), 0, 'never below zero')
})

t.test('BroadcastQueue: least-sent first, newer news replaces older, bounded', async t => {
  const q = new BroadcastQueue(3)
  q.push({ k: 'left', id: 'a', inc: 1 }, 10)
  q.push({ k: 'left', id: 'b', inc: 1 }, 10)
  q.push({ k: 'left', id: 'a', inc: 2 }, 10)
  t.equal(q.length, 2, 'news about a replaced')
  const first = q.take(1000, 2, 2, 10)
  t.same(first.map(g => [g.id, g.inc]), [['a', 2], ['b', 1]])
  q.push({ k: 'left', id: 'c', inc: 1 }, 10)
  t.same(q.take(12, 2, 2, 10).map(g => g.id), ['c'], 'budget fits one, the least-sent goes first')
  t.equal(q.length, 3, 'each sent once of two: all stay')
  q.take(1000, 2, 2, 10)
  t.equal(q.length, 0, 'all reached their limit and left the queue')
  q.push({ k: 'left', id: 'd', inc: 1 }, 10)
  q.push({ k: 'left', id: 'e', inc: 1 }, 10)
  q.take(1000, 2, 5, 10)
  q.push({ k: 'left', id: 'f', inc: 1 }, 10)
  q.push({ k: 'left', id: 'g', inc: 1 }, 10)
  t.equal(q.length, 3, 'bounded')
  t.same(q.take(1000, 2, 5, 10).map(g => g.id).sort(), ['e', 'f', 'g'], 'the most-sent, oldest item was shed first')
})

t.test('profiles: LAN matches memberlist, all valid, ticks rounded up', async t => {
  t.match(LAN, { probeIntervalMs: 1000, probeTimeoutMs: 500, indirectChecks: 3, suspicionMult: 4, suspicionMaxTimeoutMult: 6, gossipIntervalMs: 200, gossipNodes: 3, pushPullIntervalMs: 30000, retransmitMult: 4 })
  for (const p of [LAN, WAN, EDGE]) t.doesNotThrow(() => checkConfig(p), p.name)
  t.ok(WAN.probeIntervalMs > LAN.probeIntervalMs && EDGE.suspicionMult >= WAN.suspicionMult)
  t.equal(ticksOf(250, 100), 3)
  t.equal(ticksOf(1, 100), 1)
  t.throws(() => profile('lan', { probeTimeoutMs: 2000 }), SwimConfigError)
  t.throws(() => profile('lan', { gossipNodes: -1 }), { name: 'SwimConfigError', message: /gossipNodes/ })
})
