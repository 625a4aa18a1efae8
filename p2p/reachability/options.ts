// What an agent does to be reachable from its cluster: run a circuit relay
// for NATed members (servers), hold a relay slot itself (NATed agents),
// verify its public addresses (AutoNAT) and punch holes (DCUtR). Defaults are
// named constants; the agent maps its config onto ReachabilityOptions.

export type ReserveMode = 'auto' | 'always' | 'never'

export interface RelayServiceOptions {
  /** Reservations held at once for NATed members. */
  maxReservations: number
  reservationTtlMs: number
  /** Per relayed connection; 0 = none (the connection is then not "limited"). */
  durationLimitMs: number
  dataLimitBytes: number
}

export interface ReachabilityOptions {
  /** Run the relay service; undefined = off (edge agents, clients that should not carry others' traffic). */
  relayService?: RelayServiceOptions
  /** Hold a slot on a member's relay: auto = when no interface has a public address. */
  reserve: ReserveMode
  autonat: boolean
  holePunching: boolean
}

/**
 * Relay reservations: 64 NATed members per relay. libp2p's default is 15,
 * sized for a public DHT; a cluster relay only serves admitted members.
 */
export const DEFAULT_RELAY_MAX_RESERVATIONS = 64
/** One hour; the client refreshes a few minutes before expiry. */
export const DEFAULT_RELAY_RESERVATION_TTL_MS = 3600_000

export const DEFAULT_RELAY_SERVICE: RelayServiceOptions = {
  maxReservations: DEFAULT_RELAY_MAX_RESERVATIONS,
  reservationTtlMs: DEFAULT_RELAY_RESERVATION_TTL_MS,
  // No limits by default: relayed connections then carry every cluster
  // protocol (SWIM, Raft, admission) without `runOnLimitedConnection`, and
  // only admitted members can use the relay at all, so there is no stranger
  // traffic to bound. Bulk transfers should still go direct after DCUtR.
  durationLimitMs: 0,
  dataLimitBytes: 0
}

export const DEFAULT_REACHABILITY: ReachabilityOptions = {
  relayService: DEFAULT_RELAY_SERVICE,
  reserve: 'auto',
  // Off: @libp2p/autonat 3.0's server dials back with openConnection(), which
  // returns the asker's existing connection, and closes it afterwards — two
  // agents with public addresses lose every new connection between them in
  // the middle of admission. Own interface addresses are advertised anyway
  // (ownAddrs), and NATed agents are recognised by their interfaces (shouldReserve).
  autonat: false,
  holePunching: true
}

/** AutoNAT under the cluster-private prefix, like the DHT: `/bolt/autonat/1.0.0`. */
export const AUTONAT_PROTOCOL_PREFIX = 'bolt'
export const AUTONAT_PROTOCOL = `/${AUTONAT_PROTOCOL_PREFIX}/autonat/1.0.0`
export const RELAY_HOP_PROTOCOL = '/libp2p/circuit/relay/0.2.0/hop'
export const RELAY_STOP_PROTOCOL = '/libp2p/circuit/relay/0.2.0/stop'
export const DCUTR_PROTOCOL = '/libp2p/dcutr'

export class InvalidReachabilityOptionError extends Error {
  override name = 'InvalidReachabilityOptionError'
}

/** Checks options up front, naming the option and its value. */
export function checkReachabilityOptions (o: ReachabilityOptions): ReachabilityOptions {
  const r = o.relayService
  if (r !== undefined) {
    for (const [k, v] of Object.entries(r)) {
      if (!Number.isInteger(v) || v < 0) throw new InvalidReachabilityOptionError(`relay ${k} must be a non-negative integer, got ${String(v)}`)
    }
    if (r.reservationTtlMs < 1000) throw new InvalidReachabilityOptionError(`relay reservationTtlMs must be at least 1000, got ${r.reservationTtlMs}`)
  }
  if (!['auto', 'always', 'never'].includes(o.reserve)) throw new InvalidReachabilityOptionError(`reserve must be auto, always or never, got ${String(o.reserve)}`)
  return o
}
