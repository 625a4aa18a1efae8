// Transport choice for the libp2p node: which transports an agent listens on
// and dials with, and which one bulk transfers prefer. Measured on loopback
// (see scenarios/p2p-goodput): TCP+Noise+Yamux moves bulk about twice as fast
// as QUIC in js-libp2p today, while QUIC connects in one round trip and
// survives NAT rebinding better — so both are kept, QUIC is listed first for
// control traffic, and bulk protocols prefer a TCP connection when one exists.
import { noise } from '@chainsafe/libp2p-noise'
import { quic } from '@chainsafe/libp2p-quic'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'

export type TransportName = 'quic' | 'tcp'

/** Default listen addresses: QUIC and TCP on the same port number (7946, Serf's). */
export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/udp/7946/quic-v1', '/ip4/0.0.0.0/tcp/7946']
/** Listen addresses for throwaway agents (dev, tests): loopback, ports chosen by the OS. */
export const EPHEMERAL_LISTEN = ['/ip4/127.0.0.1/udp/0/quic-v1', '/ip4/127.0.0.1/tcp/0']

/** Yamux window: 4 MiB lets one stream keep a loopback or LAN pipe full (default 256 KiB caps it). */
export const YAMUX_MAX_STREAM_WINDOW = 4 * 1024 * 1024

export function transportOf (addr: Multiaddr | string): TransportName | 'other' {
  const s = typeof addr === 'string' ? addr : addr.toString()
  if (s.includes('/quic-v1')) return 'quic'
  if (s.includes('/tcp/') && !s.includes('/ws')) return 'tcp'
  return 'other'
}

/** libp2p `transports`, `connectionEncrypters` and `streamMuxers` for an agent. */
export function transportModules (): {
  transports: Array<ReturnType<typeof tcp> | ReturnType<typeof quic>>
  connectionEncrypters: Array<ReturnType<typeof noise>>
  streamMuxers: Array<ReturnType<typeof yamux>>
} {
  return {
    transports: [quic(), tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: YAMUX_MAX_STREAM_WINDOW } })]
  }
}

/** Orders addresses so that the preferred transport for the purpose comes first. */
export function preferTransport (addrs: Multiaddr[], purpose: 'control' | 'bulk'): Multiaddr[] {
  const rank = (a: Multiaddr): number => {
    const t = transportOf(a)
    if (purpose === 'bulk') return t === 'tcp' ? 0 : t === 'quic' ? 1 : 2
    return t === 'quic' ? 0 : t === 'tcp' ? 1 : 2
  }
  return [...addrs].sort((a, b) => rank(a) - rank(b))
}

export function parseMultiaddr (s: string): Multiaddr {
  return multiaddr(s)
}
