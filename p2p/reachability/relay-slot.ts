// Holds a slot on a member's relay so an agent behind NAT stays reachable.
// Started only once the agent is admitted (the relay admits only members, so
// reserving earlier would be refused), and watched: libp2p gives up on a
// relay it failed to dial (a cut link), so while no relayed address exists
// for a while, the search is started again — a bounded number of times per
// hour, each restart costing one more pending reservation in libp2p.
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from '@libp2p/interface'
import { isRelayed } from './addresses.js'

export const DEFAULT_SLOT_CHECK_MS = 15_000
/** Restarts of the relay search allowed per hour; bounds libp2p's pending reservations. */
export const MAX_RESEARCHES_PER_HOUR = 6

interface TransportManagerInternals { listen: (addrs: ReturnType<typeof multiaddr>[]) => Promise<void> }

export interface RelaySlotInit {
  checkMs?: number
  log?: (msg: string) => void
}

export class RelaySlot {
  private timer: NodeJS.Timeout | undefined
  private missingSince: number | undefined
  private readonly researches: number[] = []
  private readonly checkMs: number
  private readonly log: (msg: string) => void
  private stopped = false

  constructor (private readonly libp2p: Libp2p, init: RelaySlotInit = {}) {
    this.checkMs = init.checkMs ?? DEFAULT_SLOT_CHECK_MS
    this.log = init.log ?? (() => {})
  }

  /** True once some relay granted a slot (a relayed address is listed). */
  held (): boolean { return this.libp2p.getMultiaddrs().some(isRelayed) }

  async start (): Promise<void> {
    await this.search()
    this.timer = setInterval(() => { void this.check() }, this.checkMs)
    this.timer.unref()
  }

  stop (): void {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  private async search (): Promise<void> {
    // libp2p has no public "listen now"; the transport manager does it, and
    // `/p2p-circuit` means "find a relay among connected peers and reserve".
    const tm = (this.libp2p as unknown as { components: { transportManager: TransportManagerInternals } }).components.transportManager
    await tm.listen([multiaddr('/p2p-circuit')])
  }

  private async check (): Promise<void> {
    if (this.stopped) return
    if (this.held()) { this.missingSince = undefined; return }
    const now = Date.now()
    this.missingSince ??= now
    if (now - this.missingSince < 2 * this.checkMs) return
    while (this.researches.length > 0 && now - (this.researches[0] ?? now) > 3600_000) this.researches.shift()
    if (this.researches.length >= MAX_RESEARCHES_PER_HOUR) return
    this.researches.push(now)
    this.missingSince = now
    this.log('relay slot: no relayed address; searching for a relay again')
    await this.search().catch((err: Error) => { this.log(`relay slot: search failed: ${err.message}`) })
  }
}
