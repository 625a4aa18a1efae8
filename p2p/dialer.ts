// Opens a stream of a cluster protocol to a member: dials it if needed (its
// gossiped addresses, control traffic preferring QUIC, bulk preferring TCP),
// runs admission on the connection, then negotiates the protocol.
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { preferTransport, transportOf } from '../quic/transports.js'
import type { Admission } from './admission/admission.js'

export class PeerUnreachableError extends Error {
  override name = 'PeerUnreachableError'
}

export const DIAL_TIMEOUT_MS = 5_000
/** The multiaddr protocol code of `/p2p/ID`. */
const P2P_CODE = 421
/** After a failed TCP dial for bulk traffic, the member's other connection carries bulk for this long. */
export const BULK_DIAL_RETRY_MS = 60_000

/** Per libp2p node: members a TCP connection for bulk traffic is being dialed to, or failed to lately (when). */
const bulkDials = new WeakMap<Libp2p, Map<string, number | 'dialing'>>()

/**
 * Bulk bytes (pieces) cost about half the CPU over TCP (Noise + yamux) as
 * over QUIC in js-libp2p, and a member is usually reached first over QUIC
 * (control traffic). So when bulk traffic finds only a QUIC connection, a TCP
 * one is dialed beside it in the background; until it is up, bulk uses what
 * is open.
 */
function dialBulkInBackground (libp2p: Libp2p, peerId: string, addrs: Multiaddr[]): Promise<void> | undefined {
  const tcpAddrs = addrs.filter(a => transportOf(a) === 'tcp')
  if (tcpAddrs.length === 0) return undefined
  let dials = bulkDials.get(libp2p)
  if (dials === undefined) { dials = new Map(); bulkDials.set(libp2p, dials) }
  const state = dials.get(peerId)
  if (state === 'dialing' || (state !== undefined && Date.now() - state < BULK_DIAL_RETRY_MS)) return undefined
  dials.set(peerId, 'dialing')
  const m = dials
  return (async () => {
    for (const ma of tcpAddrs) {
      try {
        await libp2p.dial(ma, { force: true, signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
        m.delete(peerId)
        return
      } catch {} // next address; if none answers, the time is recorded below and bulk stays on the open connection
    }
    m.set(peerId, Date.now())
  })()
}

/**
 * Dials a member's TCP connection for bulk traffic ahead of need, in the
 * background, unless one is open (or being dialed). Returns the background
 * dial (it never rejects), or undefined when there is nothing to dial. A pull opens its
 * streams to every peer the moment it starts; those opened before TCP is
 * up stay on QUIC for that whole pull, and its bitfield queries with them.
 */
export function prepareBulk (libp2p: Libp2p, peerId: string, addrs: string[]): Promise<void> | undefined {
  let open: Connection[]
  try {
    open = openDirect(libp2p, peerId)
  } catch {
    return undefined // not a peer id: nothing to dial (this runs in an event listener, where a throw would be uncaught)
  }
  if (open.some(c => transportOf(c.remoteAddr) === 'tcp')) return undefined
  return dialBulkInBackground(libp2p, peerId, peerAddrs(addrs, peerId))
}

/** The open connections to the member that carry no relay limits. */
function openDirect (libp2p: Libp2p, peerId: string): Connection[] {
  return libp2p.getConnections(peerIdFromString(peerId)).filter(c => c.status === 'open' && c.limits == null)
}

/** Gossiped addresses as multiaddrs ending in the member's id; unparsable ones are left out. */
function peerAddrs (addrs: string[], peerId: string): Multiaddr[] {
  return addrs.map(a => withPeer(a, peerId)).filter((m): m is Multiaddr => m !== undefined)
}

function withPeer (addr: string, peerId: string): Multiaddr | undefined {
  try {
    const ma = multiaddr(addr)
    return ma.getComponents().some(c => c.name === 'p2p') ? ma : ma.encapsulate(`/p2p/${peerId}`)
  } catch {
    return undefined // an unparsable gossiped address is skipped; the others are dialed
  }
}

export async function connectionTo (libp2p: Libp2p, peerId: string, addrs: string[], purpose: 'control' | 'bulk', signal?: AbortSignal): Promise<Connection> {
  const open = openDirect(libp2p, peerId)
  const preferred = open.find(c => transportOf(c.remoteAddr) === (purpose === 'bulk' ? 'tcp' : 'quic'))
  if (preferred !== undefined) return preferred
  // Parsed only past the common case above (every stream opened comes here).
  const mas = preferTransport(peerAddrs(addrs, peerId), purpose)
  if (open.length > 0) {
    if (purpose === 'bulk') void dialBulkInBackground(libp2p, peerId, mas)
    return open[0] as Connection
  }
  const sig = signal ?? AbortSignal.timeout(DIAL_TIMEOUT_MS * Math.max(1, mas.length))
  let last: unknown
  for (const ma of mas) {
    // Each address gets its own budget: one that silently drops packets
    // (a NATed member's private address) must not starve a relayed one.
    try {
      return await dialAddress(libp2p, ma, peerId, AbortSignal.any([sig, AbortSignal.timeout(DIAL_TIMEOUT_MS)]))
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

/**
 * Dials one gossiped address of `peerId`. A direct address is dialed without
 * its /p2p/ part: libp2p joins every dial naming a peer to the dial already
 * in flight to it, and that one works through the peer's addresses one at a
 * time, 6 s each. Started while a link was cut, it kept failing for 20 s
 * after the link came back, and every round that joined it kept it alive.
 * The peer that answers is checked here instead.
 */
async function dialAddress (libp2p: Libp2p, ma: Multiaddr, peerId: string, signal: AbortSignal): Promise<Connection> {
  if (ma.toString().includes('/p2p-circuit')) return await libp2p.dial(ma, { signal })
  const conn = await libp2p.dial(ma.decapsulateCode(P2P_CODE), { signal })
  if (conn.remotePeer.toString() === peerId) return conn
  // Someone else holds that address now (a restarted host, a reused IP): not ours to keep.
  await conn.close().catch(() => undefined) // closing is best effort; the dial already failed for this peer
  throw new PeerUnreachableError(`${ma.toString()} answered as ${conn.remotePeer.toString()}, not ${peerId}`)
}

