// Holds a slot on a member's relay so an agent behind NAT stays reachable.
// Started once the agent is admitted (relays admit only members). It picks a
// connected member that offers the relay protocol and reserves there by
// listening on `<relay>/p2p-circuit`; libp2p refreshes the reservation. While
// no relayed address exists (never got one, relay gone, link cut), it tries
// again every check, a bounded number of times per hour.
//
// libp2p's own `/p2p-circuit` search is not used on purpose: with no relay
// among its peers it runs a DHT random walk that spins without pause when
// the DHT has no peers (libp2p 3.3), burning a core on a lone agent.
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from '@libp2p/interface'
import { isRelayed } from './addresses.js'
import { RELAY_HOP_PROTOCOL } from './options.js'

export const DEFAULT_SLOT_CHECK_MS = 5_000
/** Reservation attempts allowed per hour; each may leave a listener in libp2p's transport manager. */
export const MAX_ATTEMPTS_PER_HOUR = 60
export const RESERVE_TIMEOUT_MS = 10_000

interface TransportManagerInternals { listen: (addrs: Multiaddr[]) => Promise<void> }

export class RelaySlotError extends Error {
  override name = 'RelaySlotError'
}

export interface RelaySlotInit {
  checkMs?: number
  log?: (msg: string) => void
}

export class RelaySlot {
  private timer: NodeJS.Timeout | undefined
  private readonly attempts: number[] = []
  private readonly checkMs: number
  private readonly log: (msg: string) => void
  private running: Promise<void> | undefined
  private stopped = false
  private tried = new Set<string>()

  constructor (private readonly libp2p: Libp2p, init: RelaySlotInit = {}) {
    this.checkMs = init.checkMs ?? DEFAULT_SLOT_CHECK_MS
    this.log = init.log ?? (() => {})
  }

  /** True while some relay holds a slot for us (a relayed address is listed). */
  held (): boolean { return this.libp2p.getMultiaddrs().some(isRelayed) }

  /** Tries once now, then keeps checking in the background, and as soon as a relay-capable peer is identified. */
  async start (): Promise<void> {
    this.timer = setInterval(() => { void this.schedule() }, this.checkMs)
    this.timer.unref()
    // After a cut, the first connection back to a relay is the moment to reserve again.
    this.libp2p.addEventListener('peer:identify', this.onIdentify)
    await this.schedule()
  }

  stop (): void {
    this.stopped = true
    this.libp2p.removeEventListener('peer:identify', this.onIdentify)
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  private readonly onIdentify = (evt: CustomEvent<{ protocols: string[] }>): void => {
    if (evt.detail.protocols.includes(RELAY_HOP_PROTOCOL) && !this.held()) void this.schedule()
  }

  /** One check at a time. */
  private async schedule (): Promise<void> {
    this.running ??= this.check().finally(() => { this.running = undefined })
    await this.running
  }

  /** Connected, non-relayed peers that offer the relay protocol, ones not tried lately first. */
  private async candidates (): Promise<Array<{ peer: string, addr: Multiaddr }>> {
    const out: Array<{ peer: string, addr: Multiaddr }> = []
    for (const conn of this.libp2p.getConnections()) {
      if (conn.status !== 'open' || isRelayed(conn.remoteAddr)) continue
      const peer = conn.remotePeer.toString()
      if (out.some(c => c.peer === peer)) continue
      const protocols = await this.libp2p.peerStore.get(conn.remotePeer).then(p => p.protocols, (): string[] => [])
      if (!protocols.includes(RELAY_HOP_PROTOCOL)) continue
      out.push({ peer, addr: conn.remoteAddr })
    }
    return out.sort((a, b) => Number(this.tried.has(a.peer)) - Number(this.tried.has(b.peer)))
  }

  private async check (): Promise<void> {
    if (this.stopped || this.held()) return
    const now = Date.now()
    while (this.attempts.length > 0 && now - (this.attempts[0] ?? now) > 3600_000) this.attempts.shift()
    if (this.attempts.length >= MAX_ATTEMPTS_PER_HOUR) return
    const c = (await this.candidates())[0]
    if (c === undefined) return
    this.attempts.push(now)
    this.tried.add(c.peer)
    if (this.tried.size > 64) this.tried = new Set([c.peer])
    const base = c.addr.toString().split('/p2p/')[0] ?? ''
    const listenAddr = multiaddr(`${base}/p2p/${c.peer}/p2p-circuit`)
    const tm = (this.libp2p as unknown as { components: { transportManager: TransportManagerInternals } }).components.transportManager
    try {
      await withTimeout(tm.listen([listenAddr]), RESERVE_TIMEOUT_MS)
      this.log(`relay slot held on ${c.peer}`)
    } catch (err) {
      this.log(`relay slot: ${c.peer} refused or failed: ${(err as Error).message}`)
    }
  }
}

async function withTimeout (p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([p, new Promise<void>((_resolve, reject) => { timer = setTimeout(() => reject(new RelaySlotError(`no reservation within ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}
