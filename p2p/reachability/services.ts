// The libp2p modules behind ReachabilityOptions: the circuit relay v2
// transport (dial relayed addresses, hold a slot), the relay service, AutoNAT
// and DCUtR. The agent's node adds them next to identify, ping and the DHT.
import { autoNAT } from '@libp2p/autonat'
import { circuitRelayServer, circuitRelayTransport, type CircuitRelayServerInit } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { AUTONAT_PROTOCOL, AUTONAT_PROTOCOL_PREFIX, checkReachabilityOptions, RELAY_HOP_PROTOCOL, type ReachabilityOptions, type RelayServiceOptions } from './options.js'

/** Stand-ins for "no limit" where libp2p applies both limits or neither. */
const NO_DURATION_LIMIT_MS = 2 ** 31 - 1
const NO_DATA_LIMIT_BYTES = 2n ** 62n
/** A reservation must be granted within this long (libp2p: 5 s); relays behind a slow link need more. */
export const RESERVATION_COMPLETION_TIMEOUT_MS = 10_000

export function relayServerInit (r: RelayServiceOptions): CircuitRelayServerInit {
  const limited = r.durationLimitMs > 0 || r.dataLimitBytes > 0
  return {
    reservations: {
      maxReservations: r.maxReservations,
      reservationTtl: r.reservationTtlMs,
      applyDefaultLimit: limited,
      ...(limited
        ? {
            defaultDurationLimit: r.durationLimitMs > 0 ? r.durationLimitMs : NO_DURATION_LIMIT_MS,
            defaultDataLimit: r.dataLimitBytes > 0 ? BigInt(r.dataLimitBytes) : NO_DATA_LIMIT_BYTES
          }
        : {})
    }
  }
}

type ServiceFactory = (components: never) => unknown

export interface ReachabilityModules {
  transports: Array<ReturnType<typeof circuitRelayTransport>>
  services: Record<string, ServiceFactory>
  /** Protocols these services serve that admission must guard. */
  guardedProtocols: string[]
}

export function reachabilityModules (opts: ReachabilityOptions): ReachabilityModules {
  checkReachabilityOptions(opts)
  const services: Record<string, ServiceFactory> = {}
  const guardedProtocols: string[] = []
  if (opts.relayService !== undefined) {
    services.relay = circuitRelayServer(relayServerInit(opts.relayService)) as ServiceFactory
    // Reserving a slot and being relayed both go through HOP: only admitted
    // members may do either, so a stranger reaches nobody through our relay.
    guardedProtocols.push(RELAY_HOP_PROTOCOL)
  }
  if (opts.autonat) {
    services.autonat = autoNAT({ protocolPrefix: AUTONAT_PROTOCOL_PREFIX }) as ServiceFactory
    // A dial-back is a connection to an address the asker names: members only.
    guardedProtocols.push(AUTONAT_PROTOCOL)
  }
  if (opts.holePunching) services.dcutr = dcutr() as ServiceFactory
  return {
    // Always able to dial relayed addresses; holding a slot is decided later (RelaySlot).
    transports: [circuitRelayTransport({ reservationCompletionTimeout: RESERVATION_COMPLETION_TIMEOUT_MS })],
    services,
    guardedProtocols
  }
}
