// Which of this node's addresses members should gossip and dial: libp2p's own
// list (listen addresses, announce addresses, observed addresses only once
// AutoNAT confirmed them, relay addresses while a slot is held), direct ones
// first, relayed ones after, each in the form a dialer can use as is.
import { networkInterfaces } from 'node:os'
import { isPrivate } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from '@libp2p/interface'
import type { ReserveMode } from './options.js'

export const MAX_ADVERTISED_ADDRS = 16

export function isRelayed (addr: Multiaddr | string): boolean {
  return addr.toString().includes('/p2p-circuit')
}

interface AddressManagerView {
  getAddressesWithMetadata: () => Array<{ multiaddr: Multiaddr, verified: boolean, type: string }>
}

/**
 * This node's own addresses: libp2p's list (`getMultiaddrs()`, verified
 * ones), then the addresses of its own listening interfaces that AutoNAT has
 * not verified. libp2p withholds an unverified public interface address, so
 * an agent on a public IP would otherwise print a join command with no
 * address and gossip none until a peer had dialled it back — and the first
 * agent has no peer. Unverified observed addresses (a NAT's outside port, a
 * guess) stay out.
 */
export function ownAddrs (libp2p: Libp2p): Multiaddr[] {
  const self = libp2p.peerId.toString()
  const am = (libp2p as unknown as { components: { addressManager: AddressManagerView } }).components.addressManager
  const verified = libp2p.getMultiaddrs()
  const seen = new Set(verified.map(m => m.toString()))
  const own = am.getAddressesWithMetadata()
    .filter(a => a.type === 'transport' && !a.verified)
    .map(a => a.multiaddr.toString().endsWith(`/p2p/${self}`) ? a.multiaddr : a.multiaddr.encapsulate(`/p2p/${self}`))
    .filter(m => !seen.has(m.toString()))
  return [...verified, ...own]
}

/**
 * Addresses to gossip, from `ownAddrs()`. Direct addresses lose
 * their `/p2p/SELF` suffix (members append the id they know); relayed ones
 * keep it, since the relay's id comes before `/p2p-circuit` and a dialer
 * needs both. Wildcard, link-local-v6 and websockets-only duplicates go.
 */
export function dialableAddrs (addrs: Multiaddr[], selfId: string): string[] {
  const direct: string[] = []
  const relayed: string[] = []
  for (const ma of addrs) {
    const s = ma.toString()
    if (s.startsWith('/ip4/0.0.0.0/') || s.startsWith('/ip6/::/') || s.startsWith('/ip6/fe80')) continue
    if (isRelayed(s)) {
      relayed.push(s.endsWith(`/p2p/${selfId}`) ? s : `${s}/p2p/${selfId}`)
    } else {
      direct.push(s.endsWith(`/p2p/${selfId}`) ? s.slice(0, -`/p2p/${selfId}`.length) : s)
    }
  }
  return [...new Set([...direct, ...relayed])].slice(0, MAX_ADVERTISED_ADDRS)
}

/** True when some interface of this machine has a global (non-private) IP address. */
export function hasPublicInterface (ifaces = networkInterfaces()): boolean {
  for (const list of Object.values(ifaces)) {
    for (const i of list ?? []) {
      if (i.internal) continue
      const ma = multiaddr(i.family === 'IPv4' ? `/ip4/${i.address}/tcp/1` : `/ip6/${i.address.split('%')[0] ?? ''}/tcp/1`)
      if (isPrivate(ma) !== true) return true
    }
  }
  return false
}

/**
 * Whether to hold a relay slot. `auto`: unless an announce address or an
 * interface is public — a machine with only private addresses is behind a
 * NAT or on a LAN, and a slot costs one stream on a member's relay.
 */
export function shouldReserve (mode: ReserveMode, announce: string[], publicInterface = hasPublicInterface()): boolean {
  if (mode !== 'auto') return mode === 'always'
  const publicAnnounce = announce.some(a => { try { return isPrivate(multiaddr(a)) !== true } catch { return false } }) // an unparsable announce address is not a public one
  return !publicAnnounce && !publicInterface
}
