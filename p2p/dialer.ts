// Opens a stream of a cluster protocol to a member: dials it if needed (its
// gossiped addresses, control traffic preferring QUIC, bulk preferring TCP),
// runs admission on the connection, then negotiates the protocol.
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { preferTransport } from '../quic/transports.js'
import type { Admission } from './admission/admission.js'

export class PeerUnreachableError extends Error {
  override name = 'PeerUnreachableError'
}

export const DIAL_TIMEOUT_MS = 5_000

function withPeer (addr: string, peerId: string): Multiaddr | undefined {
  try {
    const ma = multiaddr(addr)
    return ma.getComponents().some(c => c.name === 'p2p') ? ma : ma.encapsulate(`/p2p/${peerId}`)
  } catch {
    return undefined
  }
}

export async function connectionTo (libp2p: Libp2p, peerId: string, addrs: string[], purpose: 'control' | 'bulk', signal?: AbortSignal): Promise<Connection> {
  const open = libp2p.getConnections(peerIdFromString(peerId)).filter(c => c.status === 'open' && c.limits == null)
  if (open.length > 0) {
    const tcpFirst = purpose === 'bulk' ? open.find(c => c.remoteAddr.toString().includes('/tcp/')) : open.find(c => c.remoteAddr.toString().includes('/quic'))
    return tcpFirst ?? open[0] as Connection
  }
  const mas = preferTransport(addrs.map(a => withPeer(a, peerId)).filter((m): m is Multiaddr => m !== undefined), purpose)
  const sig = signal ?? AbortSignal.timeout(DIAL_TIMEOUT_MS * Math.max(1, mas.length))
  let last: unknown
  for (const ma of mas) {
    // Each address gets its own budget: one that silently drops packets
    // (a NATed member's private address) must not starve a relayed one.
    try {
      return await libp2p.dial(ma, { signal: AbortSignal.any([sig, AbortSignal.timeout(DIAL_TIMEOUT_MS)]) })
    } catch (err) {
      last = err
      if (sig.aborted) break
    }
  }
  // Fall back to whatever libp2p knows about the peer (peer store, relays).
  try {
    return await libp2p.dial(peerIdFromString(peerId), { signal: sig })
  } catch (err) {
    last ??= err
  }
  throw new PeerUnreachableError(`cannot reach ${peerId}: ${(last as Error | undefined)?.message ?? 'no address'}`)
}

export async function openClusterStream (libp2p: Libp2p, admission: Admission, peerId: string, addrs: string[], protocol: string, signal?: AbortSignal, purpose: 'control' | 'bulk' = 'control'): Promise<Stream> {
  const conn = await connectionTo(libp2p, peerId, addrs, purpose, signal)
  await admission.ensureAdmitted(peerId, signal)
  return await conn.newStream(protocol, signal !== undefined ? { signal } : {})
}
