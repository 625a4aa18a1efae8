// MembershipService checks that need no network: a fake libp2p records the
// handler and counts dials.
import t from 'tap'
import { peerIdFromString } from '@libp2p/peer-id'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { StreamHandler } from '@libp2p/interface'
import { MembershipService, InvalidMetaError, MembershipStoppedError, SWIM_PROTOCOL, type SwimLibp2p } from '../../../p2p/membership/service.js'
import { emptyMeta } from '../../../p2p/membership/meta.js'
import { profile } from '../../../p2p/membership/profiles.js'

async function fakeLibp2p (): Promise<{ libp2p: SwimLibp2p, handlers: Map<string, StreamHandler>, dials: string[] }> {
  const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const handlers = new Map<string, StreamHandler>()
  const dials: string[] = []
  const libp2p = {
    peerId,
    handle: async (p: string | string[], h: StreamHandler) => { for (const x of [p].flat()) handlers.set(x, h) },
    unhandle: async (p: string | string[]) => { for (const x of [p].flat()) handlers.delete(x) },
    dialProtocol: async (target: unknown) => { dials.push(String(target)); throw new Error('no network in this test') }
  } as unknown as SwimLibp2p
  return { libp2p, handlers, dials }
}

t.test('constructor checks metadata and identity; lifecycle is idempotent', async t => {
  const { libp2p, handlers } = await fakeLibp2p()
  t.throws(() => new MembershipService({ libp2p, self: { meta: { ...emptyMeta('x'), role: 'boss' as 'server' } } }), InvalidMetaError)
  t.throws(() => new MembershipService({ libp2p, self: { id: '12D3KooWnotme', meta: emptyMeta('x') } }), /not the libp2p peer id/)
  const incs: number[] = []
  const svc = new MembershipService({ libp2p, self: { meta: emptyMeta('x') }, lastIncarnation: 41, onIncarnation: n => incs.push(n), config: profile('lan', { tickMs: 10 }) })
  await t.rejects(svc.join([{ id: peerIdFromString('12D3KooWLbRw8uZtwzhD1Sq7yA5dnVWNJ9iaq7xgiYfhtVzTPrsV').toString(), addrs: [] }]), MembershipStoppedError)
  await svc.start()
  await svc.start()
  t.ok(handlers.has(SWIM_PROTOCOL))
  t.same(incs, [42], 'starting incarnation reported for persistence')
  t.equal(svc.incarnation(), 42)
  svc.updateMeta({ ...emptyMeta('x'), labels: { zone: 'a' } })
  t.same(incs, [42, 43])
  t.throws(() => svc.updateMeta({ ...emptyMeta('x'), labels: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v'])) }), InvalidMetaError)
  t.equal(svc.members().length, 1)
  t.equal(svc.members()[0]?.meta.labels.zone, 'a')
  await svc.join([])
  await svc.stop()
  await svc.stop()
  t.notOk(handlers.has(SWIM_PROTOCOL), 'handler removed on stop')
})

t.test('sends that fail are counted, not thrown', async t => {
  const { libp2p, dials } = await fakeLibp2p()
  const svc = new MembershipService({ libp2p, self: { meta: emptyMeta('x') }, config: profile('lan', { tickMs: 10, probeIntervalMs: 100, probeTimeoutMs: 50 }) })
  await svc.start()
  t.teardown(async () => { await svc.stop() })
  const seed = peerIdFromString('12D3KooWLbRw8uZtwzhD1Sq7yA5dnVWNJ9iaq7xgiYfhtVzTPrsV').toString()
  await t.rejects(svc.join([{ id: seed, addrs: ['/ip4/127.0.0.1/tcp/9'] }], { timeoutMs: 2000 }), { name: 'JoinError' })
  t.ok(dials.length >= 1 && dials[0]?.includes(`/p2p/${seed}`), 'dialled the seed address with its peer id appended')
  t.ok(svc.stats().sendFailures >= 1)
})
