// Which addresses an agent gossips, when it holds a relay slot, and how relay
// limits map onto libp2p's relay service.
import t from 'tap'
import { multiaddr } from '@multiformats/multiaddr'
import { checkReachabilityOptions, DEFAULT_RELAY_SERVICE, DEFAULT_REACHABILITY, dialableAddrs, relayServerInit, shouldReserve } from '../../p2p/reachability/index.js'
import { preferTransport, transportOf } from '../../quic/transports.js'
import { parseConfig, reachabilityOptions, dhtServerMode, uploadSlots } from '../../agent/config.js'

const SELF = '12D3KooWRedrmxtf2vqjDj6jFett4hoxK2Xu7h74eTekXEEkU8zm'
const RELAY = '12D3KooWLbt15vH1YUGDseVaLBhtfcEL2fCTLwFs2YhkMNP1o32Y'

t.test('dialableAddrs: direct ones first without /p2p, relayed ones after with both ids', async t => {
  const got = dialableAddrs([
    multiaddr(`/ip4/10.0.0.5/tcp/7946/p2p/${SELF}`),
    multiaddr(`/ip4/1.2.3.4/udp/7946/quic-v1/p2p/${RELAY}/p2p-circuit/p2p/${SELF}`),
    multiaddr(`/ip4/10.0.0.5/udp/7946/quic-v1/p2p/${SELF}`),
    multiaddr(`/ip4/0.0.0.0/tcp/7946/p2p/${SELF}`),
    multiaddr(`/ip4/10.0.0.5/tcp/7946/p2p/${SELF}`)
  ], SELF)
  t.same(got, [
    '/ip4/10.0.0.5/tcp/7946',
    '/ip4/10.0.0.5/udp/7946/quic-v1',
    `/ip4/1.2.3.4/udp/7946/quic-v1/p2p/${RELAY}/p2p-circuit/p2p/${SELF}`
  ])
})

t.test('a relayed address is not "quic" but ranks by the transport to its relay, after direct ones', async t => {
  const relayed = multiaddr(`/ip4/1.2.3.4/udp/1/quic-v1/p2p/${RELAY}/p2p-circuit/p2p/${SELF}`)
  t.equal(transportOf(relayed), 'other')
  t.equal(transportOf('/ip4/1.2.3.4/tcp/1/ws'), 'ws')
  const direct = multiaddr('/ip4/10.0.0.5/udp/7946/quic-v1')
  t.same(preferTransport([direct, relayed], 'control').map(String), [direct, relayed].map(String), 'advertised order kept among QUIC addresses')
  t.same(preferTransport([relayed, multiaddr('/ip4/10.0.0.5/tcp/1')], 'control').map(String)[0], relayed.toString(), 'a QUIC relay before a direct TCP one for control')
})

t.test('shouldReserve', async t => {
  t.equal(shouldReserve('always', [], true), true)
  t.equal(shouldReserve('never', [], false), false)
  t.equal(shouldReserve('auto', [], false), true, 'only private interfaces: behind NAT or on a LAN')
  t.equal(shouldReserve('auto', [], true), false, 'a public interface')
  t.equal(shouldReserve('auto', ['/ip4/8.8.8.8/tcp/7946'], false), false, 'a public announce address')
  t.equal(shouldReserve('auto', ['/ip4/192.168.1.2/tcp/7946'], false), true, 'a private announce address')
})

t.test('relay limits: none by default, both applied when one is set', async t => {
  t.same(relayServerInit(DEFAULT_RELAY_SERVICE).reservations, { maxReservations: 64, reservationTtl: 3600_000, applyDefaultLimit: false })
  const r = relayServerInit({ ...DEFAULT_RELAY_SERVICE, dataLimitBytes: 1 << 20 }).reservations
  t.equal(r?.applyDefaultLimit, true)
  t.equal(r?.defaultDataLimit, 1n << 20n)
  t.ok((r?.defaultDurationLimit ?? 0) > 24 * 3600_000, 'no duration limit stands for a very long one')
  t.throws(() => checkReachabilityOptions({ ...DEFAULT_REACHABILITY, relayService: { ...DEFAULT_RELAY_SERVICE, maxReservations: -1 } }), { name: 'InvalidReachabilityOptionError', message: /maxReservations/ })
})

t.test('config: edge profile is a DHT client with no relay service and no upload slots unless set', async t => {
  const edge = parseConfig('profile = "edge"\n', 'f.toml')
  t.equal(reachabilityOptions(edge, 'server').relayService, undefined)
  t.equal(dhtServerMode(edge, 'server'), false)
  t.equal(uploadSlots(edge), 0)
  t.equal(uploadSlots(parseConfig('profile = "edge"\n[content]\nupload_slots = 2\n', 'f.toml')), 2)
  const lan = parseConfig(undefined, 'flags')
  t.ok(reachabilityOptions(lan, 'server').relayService, 'servers relay')
  t.equal(reachabilityOptions(lan, 'client').relayService, undefined, 'clients do not')
  t.equal(uploadSlots(lan), 8)
  t.equal(dhtServerMode(lan, 'server'), true)
  t.throws(() => parseConfig('[websockets]\nlisten = ["/ip4/0.0.0.0/tcp/7947"]\n', 'f.toml'), { message: /websockets\.listen\.0: .*\/ws/ })
  t.equal(parseConfig('mdns = false\n', 'f.toml').mdns, false)
})
