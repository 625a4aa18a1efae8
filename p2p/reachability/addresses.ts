// Which of this node's addresses members should gossip and dial: libp2p's own
// list (listen addresses, announce addresses, observed addresses only once
// AutoNAT confirmed them, relay addresses while a slot is held), direct ones
// first, relayed ones after, each in the form a dialer can use as is.
import { networkInterfaces } from 'node:os'
import { isPrivate } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { ReserveMode } from './options.js'

export const MAX_ADVERTISED_ADDRS = 16

export function isRelayed (addr: Multiaddr | string): boolean {
  return addr.toString().includes('/p2p-circuit')
}

/**
 * Addresses to gossip, from libp2p's `getMultiaddrs()`. Direct addresses lose
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
  const publicAnnounce = announce.some(a => { try { return isPrivate(multiaddr(a)) !== true } catch { return false } })
  return !publicAnnounce && !publicInterface
}
