// Zero-config LAN discovery over mDNS. Members answer queries for their
// cluster's service name; a joiner holding only a token asks for that name
// and tries what answers. The name is derived from the token's cluster id, so
// two clusters on one LAN never see each other's members — and admission
// still checks whatever answers (a wrong cluster rejects the join).
import { createHash } from 'node:crypto'
import { mdns } from '@libp2p/mdns'
import type { Libp2p, PeerDiscovery, PeerInfo, Startable } from '@libp2p/interface'

/** Queries while searching: every second (libp2p's default is 10 s; a joiner is waiting). */
export const SEARCH_QUERY_INTERVAL_MS = 1000
/** Members query too (libp2p's mdns always does); they need nothing, so rarely. */
export const MEMBER_QUERY_INTERVAL_MS = 3600_000
export const MAX_CANDIDATES = 64

export class LanDiscoveryTimeoutError extends Error {
  override name = 'LanDiscoveryTimeoutError'
}

/** `_bolt-<16 hex>._udp.local`: a DNS label of the cluster id's hash, stable for the cluster's life. */
export function mdnsServiceTag (clusterId: string): string {
  return `_bolt-${createHash('sha256').update(`bolt-mdns:${clusterId}`).digest('hex').slice(0, 16)}._udp.local`
}

export interface LanCandidate { id: string, addrs: string[] }

type MdnsService = PeerDiscovery & Startable

function createMdns (libp2p: Libp2p, serviceTag: string, broadcast: boolean, interval: number): MdnsService {
  const components = (libp2p as unknown as { components: Parameters<ReturnType<typeof mdns>>[0] }).components
  return mdns({ serviceTag, broadcast, interval, peerName: libp2p.peerId.toString() })(components) as MdnsService
}

/** Answers mDNS queries for this member's cluster, so joiners with only a token find it. */
export class LanAdvertiser {
  private service: MdnsService | undefined

  constructor (private readonly libp2p: Libp2p) {}

  async start (clusterId: string): Promise<void> {
    if (this.service !== undefined) return
    this.service = createMdns(this.libp2p, mdnsServiceTag(clusterId), true, MEMBER_QUERY_INTERVAL_MS)
    await this.service.start()
  }

  async stop (): Promise<void> {
    const s = this.service
    this.service = undefined
    await s?.stop()
  }
}

/**
 * Yields members of the cluster found on the LAN, each peer once, until the
 * signal aborts (the caller stops when one admits it). Does not answer
 * queries itself: it is not a member yet.
 */
export async function * searchLan (libp2p: Libp2p, clusterId: string, signal: AbortSignal): AsyncGenerator<LanCandidate> {
  const service = createMdns(libp2p, mdnsServiceTag(clusterId), false, SEARCH_QUERY_INTERVAL_MS)
  const self = libp2p.peerId.toString()
  const seen = new Set<string>()
  const queue: LanCandidate[] = []
  let wake: (() => void) | undefined
  const onPeer = (evt: CustomEvent<PeerInfo>): void => {
    const id = evt.detail.id.toString()
    if (id === self || seen.has(id) || seen.size >= MAX_CANDIDATES) return
    seen.add(id)
    queue.push({ id, addrs: evt.detail.multiaddrs.map(m => m.toString()) })
    wake?.()
  }
  const onAbort = (): void => { wake?.() }
  service.addEventListener('peer', onPeer)
  signal.addEventListener('abort', onAbort)
  await service.start()
  try {
    while (!signal.aborted) {
      const next = queue.shift()
      if (next !== undefined) { yield next; continue }
      await new Promise<void>(resolve => { wake = resolve })
      wake = undefined
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    service.removeEventListener('peer', onPeer)
    await service.stop()
  }
}
