// Script-style tests of the SWIM core's rules, one message at a time:
// incarnation/precedence table, refutation, the buddy system, tombstones,
// bounded piggybacking and push-pull chunking.
import t from 'tap'
import { SwimCore } from '../../../p2p/membership/core/swim-core.js'
import { seededRandom } from '../../../p2p/membership/core/random.js'
import { emptyMeta, type MemberMeta } from '../../../p2p/membership/meta.js'
import { profile } from '../../../p2p/membership/profiles.js'
import { MAX_MESSAGE_BYTES, encodeMessage } from '../../../p2p/membership/codec.js'
import { MAX_GOSSIP_ITEMS, type Gossip } from '../../../p2p/membership/messages.js'
import { simLeftSig, simSigner, simVerifyLeft } from './sim-left.js'

const config = profile('lan', { reclaimMs: 5000 })
const meta = (name: string, extra: Partial<MemberMeta> = {}): MemberMeta => ({ ...emptyMeta(name, 'server', [`/sim/${name}`]), ...extra })
const core = (id: string, lastIncarnation = 0): SwimCore => new SwimCore({ self: id, meta: meta(id), lastIncarnation, config, random: seededRandom(42), verifyLeft: simVerifyLeft })
const gossip = (c: SwimCore, from: string, ...g: Gossip[]): void => { c.receive(from, { t: 'gossip', g }) }

t.test('precedence: incarnation first, then left > dead > suspect > alive', async t => {
  const o = core('o')
  const steps: Array<[Gossip, string, number]> = [
    [{ k: 'alive', id: 'x', inc: 3, meta: meta('x') }, 'alive', 3],
    [{ k: 'alive', id: 'x', inc: 2, meta: meta('x') }, 'alive', 3],
    [{ k: 'suspect', id: 'x', inc: 2, from: 'p' }, 'alive', 3],
    [{ k: 'suspect', id: 'x', inc: 3, from: 'p' }, 'suspect', 3],
    [{ k: 'alive', id: 'x', inc: 3, meta: meta('x') }, 'suspect', 3],
    [{ k: 'alive', id: 'x', inc: 4, meta: meta('x') }, 'alive', 4],
    [{ k: 'dead', id: 'x', inc: 3, from: 'p' }, 'alive', 4],
    [{ k: 'dead', id: 'x', inc: 4, from: 'p' }, 'dead', 4],
    [{ k: 'suspect', id: 'x', inc: 4, from: 'q' }, 'dead', 4],
    [{ k: 'alive', id: 'x', inc: 4, meta: meta('x') }, 'dead', 4],
    [{ k: 'left', id: 'x', inc: 4, sig: simLeftSig('x', 4) }, 'left', 4],
    [{ k: 'dead', id: 'x', inc: 5, from: 'p' }, 'left', 4],
    [{ k: 'alive', id: 'x', inc: 4, meta: meta('x') }, 'left', 4],
    [{ k: 'alive', id: 'x', inc: 5, meta: meta('x') }, 'alive', 5]
  ]
  for (const [g, state, inc] of steps) {
    gossip(o, 'p', g)
    const m = o.member('x')
    t.same([m?.state, m?.incarnation], [state, inc], `${g.k} ${g.inc} → ${state} ${inc}`)
  }
  t.same(o.drain().events.map(e => e.kind), ['joined', 'suspect', 'alive', 'dead', 'left', 'joined'])
})

t.test('left counts only with the member\'s own signature, which is relayed with it', async t => {
  const o = core('o')
  gossip(o, 'p', { k: 'alive', id: 'x', inc: 3, meta: meta('x') })
  o.drain()
  gossip(o, 'p', { k: 'left', id: 'x', inc: 9 })
  gossip(o, 'p', { k: 'left', id: 'x', inc: 9, sig: simLeftSig('p', 9) })
  gossip(o, 'p', { k: 'left', id: 'x', inc: 10, sig: simLeftSig('x', 9) })
  o.receive('p', { t: 'push-pull', join: false, reply: false, states: [{ id: 'x', inc: 11, state: 'left', meta: meta('x') }] })
  t.same([o.member('x')?.state, o.member('x')?.incarnation], ['alive', 3], 'unsigned, foreign-signed, replayed-at-another-incarnation left news: all ignored')
  t.notOk(o.drain().events.some(e => e.kind === 'left'), 'no left event')
  gossip(o, 'p', { k: 'left', id: 'o', inc: 50 })
  t.equal(o.incarnation(), 51, 'left news about ourselves, even unsigned, is refuted (it may be our own from an earlier life)')
  o.receive('p', { t: 'push-pull', join: false, reply: false, states: [{ id: 'x', inc: 4, state: 'left', meta: meta('x'), sig: simLeftSig('x', 4) }] })
  t.equal(o.member('x')?.state, 'left', 'signed left from push-pull is taken')
  gossip(o, 'p', { k: 'alive', id: 'p', inc: 1, meta: meta('p') })
  let relayed: Gossip | undefined
  for (let i = 0; i < 100 && relayed === undefined; i++) {
    o.tick()
    relayed = o.drain().send.flatMap(s => 'g' in s.msg ? s.msg.g : []).find(g => g.k === 'left' && g.id === 'x')
  }
  t.same(relayed, { k: 'left', id: 'x', inc: 4, sig: simLeftSig('x', 4) }, 'relayed with its signature')
})

t.test('news about an unknown member: only alive adds it', async t => {
  const o = core('o')
  gossip(o, 'p', { k: 'suspect', id: 'u', inc: 9, from: 'p' }, { k: 'dead', id: 'v', inc: 9, from: 'p' }, { k: 'left', id: 'w', inc: 9, sig: simLeftSig('w', 9) })
  t.equal(o.members().length, 1)
})

t.test('refutation: suspicion of oneself is answered with a higher incarnation on the next message', async t => {
  const o = core('o', 6)
  t.equal(o.incarnation(), 7, 'starts above the persisted incarnation')
  gossip(o, 'p', { k: 'alive', id: 'p', inc: 1, meta: meta('p') })
  o.drain()
  o.receive('p', { t: 'ping', seq: 5, target: 'o', g: [{ k: 'suspect', id: 'o', inc: 7, from: 'p' }] })
  t.equal(o.incarnation(), 8)
  t.equal(o.healthScore(), 1, 'being suspected hints that we are slow')
  const [ack] = o.drain().send
  t.equal(ack?.msg.t, 'ack')
  t.ok(ack?.msg.t === 'ack' && ack.msg.g.some(g => g.k === 'alive' && g.id === 'o' && g.inc === 8), 'the refutation rides on the ack')
  gossip(o, 'p', { k: 'dead', id: 'o', inc: 11, from: 'p' })
  t.equal(o.incarnation(), 12, 'a death at a higher incarnation is refuted above it')
  gossip(o, 'p', { k: 'alive', id: 'o', inc: 12, meta: meta('o', { version: 'old life' }) })
  t.equal(o.incarnation(), 13, 'an alive about us with other metadata at our incarnation is refuted')
  gossip(o, 'p', { k: 'alive', id: 'o', inc: 13, meta: meta('o') })
  t.equal(o.incarnation(), 13, 'our own news echoing back is not refuted')
  t.equal(o.stats().selfRefutations, 3)
})

t.test('after leave(), news of our death is not refuted and nothing is probed', async t => {
  const o = core('o')
  gossip(o, 'p', { k: 'alive', id: 'p', inc: 1, meta: meta('p') })
  o.drain()
  o.leave(simSigner('o'))
  const inc = o.incarnation()
  const d = o.drain()
  t.ok(d.send.length > 0 && d.send.every(s => s.msg.t === 'gossip' && s.msg.g.some(g => g.k === 'left' && g.id === 'o' && g.inc === inc)), 'left pushed at once')
  gossip(o, 'p', { k: 'dead', id: 'o', inc: inc + 1, from: 'p' })
  t.equal(o.incarnation(), inc)
  for (let i = 0; i < 50; i++) o.tick()
  t.notOk(o.drain().send.some(s => s.msg.t === 'ping' || s.msg.t === 'push-pull'), 'no probes or anti-entropy after leaving')
})

t.test('buddy system: a probe of a suspect carries the suspicion; a misrouted ping is ignored', async t => {
  const o = core('o')
  gossip(o, 'p', { k: 'alive', id: 'x', inc: 1, meta: meta('x') }, { k: 'suspect', id: 'x', inc: 1, from: 'p' })
  o.drain()
  let ping
  for (let i = 0; i < 20 && ping === undefined; i++) {
    o.tick()
    ping = o.drain().send.find(s => s.msg.t === 'ping')
  }
  t.equal(ping?.to, 'x')
  t.ok(ping?.msg.t === 'ping' && ping.msg.g[0]?.k === 'suspect' && ping.msg.g[0].id === 'x', 'suspect about the target comes first')
  o.receive('p', { t: 'ping', seq: 1, target: 'somebody-else', g: [] })
  t.equal(o.drain().send.length, 0)
})

t.test('indirect probe: ack forwarded, or a nack before the requester\'s deadline', async t => {
  const r = core('r')
  gossip(r, 'p', { k: 'alive', id: 'x', inc: 1, meta: meta('x') }, { k: 'alive', id: 'o', inc: 1, meta: meta('o') })
  r.drain()
  r.receive('o', { t: 'ping-req', seq: 77, target: 'x', addrs: [], g: [] })
  const ping = r.drain().send.find(s => s.msg.t === 'ping')
  t.equal(ping?.to, 'x')
  if (ping?.msg.t !== 'ping') throw new Error('no ping')
  r.receive('x', { t: 'ack', seq: ping.msg.seq, g: [] })
  t.same(r.drain().send.map(s => [s.to, s.msg.t, s.msg.t === 'ack' ? s.msg.seq : -1]), [['o', 'ack', 77]])
  r.receive('o', { t: 'ping-req', seq: 78, target: 'x', addrs: [], g: [] })
  r.drain()
  let nackAt = -1
  for (let i = 1; i <= 10 && nackAt < 0; i++) {
    r.tick()
    if (r.drain().send.some(s => s.to === 'o' && s.msg.t === 'nack' && s.msg.seq === 78)) nackAt = i
  }
  t.ok(nackAt > 0 && nackAt < (config.probeIntervalMs - config.probeTimeoutMs) / config.tickMs, `nack after ${nackAt} ticks, inside the indirect window`)
})

t.test('reaped members leave a tombstone that stale news cannot get past', async t => {
  const o = core('o')
  gossip(o, 'p', { k: 'alive', id: 'x', inc: 4, meta: meta('x') }, { k: 'dead', id: 'x', inc: 4, from: 'p' })
  for (let i = 0; i < config.reclaimMs / config.tickMs + 2 * config.probeIntervalMs / config.tickMs; i++) o.tick()
  t.equal(o.member('x'), undefined, 'reaped')
  t.ok(o.drain().events.some(e => e.kind === 'reaped' && e.member.id === 'x'))
  gossip(o, 'p', { k: 'alive', id: 'x', inc: 4, meta: meta('x') })
  t.equal(o.member('x'), undefined, 'stale alive ignored')
  gossip(o, 'p', { k: 'alive', id: 'x', inc: 5, meta: meta('x') })
  t.equal(o.member('x')?.state, 'alive', 'a newer life is welcome')
})

t.test('bounded piggybacking and push-pull chunking under a big membership', async t => {
  const o = core('o')
  const big = (i: number): MemberMeta => meta(`member-${i}`, { labels: Object.fromEntries(Array.from({ length: 8 }, (_, j) => [`label-${j}`, 'v'.repeat(100)])) })
  for (let i = 0; i < 600; i++) gossip(o, 'p', { k: 'alive', id: `m${i}`, inc: 1, meta: big(i) })
  o.drain()
  for (let i = 0; i < 30; i++) o.tick()
  const sent = o.drain().send
  t.ok(sent.length > 0)
  for (const s of sent) {
    t.ok(encodeMessage(s.msg).byteLength <= MAX_MESSAGE_BYTES, `${s.msg.t} within the size bound`)
    if (s.msg.t !== 'push-pull') t.ok(s.msg.g.length <= MAX_GOSSIP_ITEMS)
  }
  o.join([{ id: 'seed', addrs: ['/sim/seed'] }])
  const pp = o.drain().send.filter(s => s.to === 'seed' && s.msg.t === 'push-pull')
  t.ok(pp.length > 1, `state split into ${pp.length} push-pull messages`)
  t.same(pp.map(s => s.msg.t === 'push-pull' && s.msg.reply), [true, ...pp.slice(1).map(() => false)], 'only the first asks for a reply')
  t.equal(pp.reduce((n, s) => n + (s.msg.t === 'push-pull' ? s.msg.states.length : 0), 0), 601, 'every member and ourselves is sent')
})
