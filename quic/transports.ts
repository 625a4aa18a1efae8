// Transport choice for the libp2p node: which transports an agent listens on
// and dials with, and which one bulk transfers prefer. Measured on loopback
// (see scenarios/p2p-goodput): TCP+Noise+Yamux moves bulk about twice as fast
// as QUIC in js-libp2p today, while QUIC connects in one round trip and
// survives NAT rebinding better — so both are kept, QUIC is listed first for
// control traffic, and bulk protocols prefer a TCP connection when one exists.
// WebSockets is optional (off by default) for browser clients. WebTransport
// would slot in here too, but js-libp2p's WebTransport can only dial, from a
// browser: Node cannot listen on it today.
import { noise } from '@chainsafe/libp2p-noise'
import { quic } from '@chainsafe/libp2p-quic'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { createRequire } from 'node:module'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { noiseCrypto } from './noise-crypto.js'
import { withBatchedWrites } from './tcp-writes.js'
import { lentReadDialOptions, withLentReads } from './tcp-reads.js'

type WebSocketsFactory = typeof import('@libp2p/websockets').webSockets
type TcpDialOptions = NonNullable<NonNullable<Parameters<typeof tcp>[0]>['dialOpts']>

/**
 * The WebSockets transport, loaded only when asked for (it brings `ws` and
 * a few MB of heap an agent without browser clients never uses). Its
 * package exports a `module-sync` entry, so `require` loads it synchronously.
 */
function webSockets (): ReturnType<WebSocketsFactory> {
  const { webSockets: factory } = createRequire(import.meta.url)('@libp2p/websockets') as { webSockets: WebSocketsFactory }
  return factory()
}

export type TransportName = 'quic' | 'tcp' | 'ws'

/** Default listen addresses: QUIC and TCP on the same port number (7946, Serf's). */
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/udp/7946/quic-v1', '/ip4/0.0.0.0/tcp/7946']
/** Listen addresses for throwaway agents (dev, tests): loopback, ports chosen by the OS. */
export const EPHEMERAL_LISTEN = ['/ip4/127.0.0.1/udp/0/quic-v1', '/ip4/127.0.0.1/tcp/0']

/** Yamux window: 4 MiB lets one stream keep a loopback or LAN pipe full (default 256 KiB caps it). */
export const YAMUX_MAX_STREAM_WINDOW = 4 * 1024 * 1024

/** The transport an address is reached over; a relayed (`/p2p-circuit`) address is 'other'. */
export function transportOf (addr: Multiaddr | string): TransportName | 'other' {
  const s = typeof addr === 'string' ? addr : addr.toString()
  if (s.includes('/p2p-circuit')) return 'other'
  if (s.includes('/quic-v1')) return 'quic'
  if (/\/wss?(\/|$)/.test(s)) return 'ws'
  if (s.includes('/tcp/')) return 'tcp'
  return 'other'
}

export interface TransportOptions {
  /** Add the WebSockets transport (listen on /ws addresses, dial them). */
  websockets?: boolean
}

/** libp2p `transports`, `connectionEncrypters` and `streamMuxers` for an agent. */
export function transportModules (opts: TransportOptions = {}): {
  transports: Array<ReturnType<typeof tcp> | ReturnType<typeof quic> | ReturnType<WebSocketsFactory>>
  connectionEncrypters: Array<ReturnType<typeof noise>>
  streamMuxers: Array<ReturnType<typeof yamux>>
} {
  return {
    // Dialed TCP sockets read into one reused buffer, which Noise decodes
    // from directly (tcp-reads.ts); accepted ones read as before.
    transports: [quic(), withBatchedWrites(tcp({ dialOpts: lentReadDialOptions() as TcpDialOptions })), ...(opts.websockets === true ? [webSockets()] : [])],
    connectionEncrypters: [withLentReads(noise({ crypto: noiseCrypto }))],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: YAMUX_MAX_STREAM_WINDOW } })]
  }
}

/** Orders addresses so that the preferred transport for the purpose comes first. */
export function preferTransport (addrs: Multiaddr[], purpose: 'control' | 'bulk'): Multiaddr[] {
  const rank = (a: Multiaddr): number => {
    // A relayed address ranks by the transport it reaches the relay over, so
    // the advertised order (direct addresses first) decides between them.
    const t = transportOf(a.toString().split('/p2p-circuit')[0] ?? '')
    if (purpose === 'bulk') return t === 'tcp' ? 0 : t === 'quic' ? 1 : 2
    return t === 'quic' ? 0 : t === 'tcp' ? 1 : 2
  }
  return [...addrs].sort((a, b) => rank(a) - rank(b))
}

export function parseMultiaddr (s: string): Multiaddr {
  return multiaddr(s)
}
