// SWIM configuration profiles, written as documentation in the manner of
// hashicorp/memberlist's config.go: every field says what it trades off and
// which formula uses it. Times are configured in milliseconds and converted
// once into core ticks (`ticksOf`), so the core itself only counts ticks.

/** Length of one core tick in the default profiles. Every time below is a whole number of ticks. */
export const TICK_MS = 100

export interface SwimConfig {
  /** Profile name, for logs and reports. */
  name: string
  /**
   * Length of one `tick()` of the core. The driver calls `tick()` this often.
   * Smaller ticks give finer timers at the price of more wake-ups; every
   * other time is rounded up to whole ticks.
   */
  tickMs: number
  /**
   * Time between failure probes: each round this node pings one member,
   * chosen in randomized round-robin order. Lower detects failures sooner
   * but costs N messages per interval over the cluster. Scaled at run time
   * by the local-health multiplier (Lifeguard): interval·(health+1).
   */
  probeIntervalMs: number
  /**
   * How long to wait for a direct ack before asking `indirectChecks` other
   * members to probe the target. Should be about the 99th percentile of
   * round-trip time; deliberately not scaled by local health (waiting longer
   * does not get a lost packet through, the scaled interval gives the
   * indirect probes their time).
   */
  probeTimeoutMs: number
  /**
   * k: members asked to probe a target indirectly (ping-req) after a failed
   * direct probe. More routes around a broken link; more load on failure.
   */
  indirectChecks: number
  /**
   * Suspicion timeout multiplier. The minimum suspicion timeout is
   * `suspicionMult · max(1, log10(N)) · probeIntervalMs`: larger gives a
   * slandered but healthy node more time to refute, smaller declares dead
   * nodes sooner.
   */
  suspicionMult: number
  /**
   * Lifeguard: a suspicion starts at `suspicionMaxTimeoutMult · min` and
   * shrinks towards `min` as independent confirmations arrive (see
   * `remainingSuspicionMs`). A lone suspecter must wait the maximum, so one
   * overloaded node cannot get a healthy peer declared dead quickly.
   */
  suspicionMaxTimeoutMult: number
  /**
   * Lifeguard local health: the highest multiplier (health score + 1) by
   * which probe intervals are stretched when this node misses acks/nacks or
   * has to refute suspicions about itself — the sign that *we* are slow.
   */
  awarenessMaxMultiplier: number
  /**
   * Piggyback retransmissions: each broadcast is sent
   * `retransmitMult · ceil(log10(N + 1))` times. Higher makes dissemination
   * more robust to loss, at the cost of larger messages.
   */
  retransmitMult: number
  /** Gossip round: every `gossipIntervalMs` send queued broadcasts to `gossipNodes` random members. */
  gossipIntervalMs: number
  /** Fan-out of a gossip round. Higher spreads news faster with more traffic. */
  gossipNodes: number
  /**
   * Dead (not left) members are still gossiped to for this long, so a node
   * wrongly declared dead hears it and refutes.
   */
  gossipToTheDeadMs: number
  /**
   * Full state exchange with one random member (anti-entropy). Scaled for
   * clusters above 32 members by `ceil(log2(N) − log2(32)) + 1`. 0 disables
   * periodic push-pull (joins still use it).
   */
  pushPullIntervalMs: number
  /**
   * Dead and left members stay in the member list (and in status output) for
   * this long, then are reaped to a tombstone. Serf keeps failed members for
   * hours; a short time here only affects what `status` shows.
   */
  reclaimMs: number
  /**
   * Tombstones (id → last incarnation) of reaped members are kept this long,
   * so stale news cannot resurrect a reaped member.
   */
  tombstoneMs: number
  /** Bounded broadcast queue: beyond this, the most-retransmitted broadcasts are dropped. */
  maxBroadcasts: number
  /** Bound on the member list; alive news about further members is ignored. */
  maxMembers: number
}

/**
 * memberlist's DefaultLANConfig: a LAN or one data centre, round trips well
 * under 500 ms.
 */
export const LAN: Readonly<SwimConfig> = Object.freeze({
  name: 'lan',
  tickMs: TICK_MS,
  probeIntervalMs: 1000, // one failure probe a second per node: N probes/s cluster-wide
  probeTimeoutMs: 500, // a LAN round trip is far below this
  indirectChecks: 3, // three other routes before suspecting
  suspicionMult: 4, // min suspicion 4 s at N ≤ 10, 4.8 s at N = 16
  suspicionMaxTimeoutMult: 6, // a lone suspecter waits up to 6 × min
  awarenessMaxMultiplier: 8, // an unhealthy node probes at most 8× slower
  retransmitMult: 4, // 4 × ceil(log10(N+1)) sends of each piece of news
  gossipIntervalMs: 200, // news spreads in a few hundred ms
  gossipNodes: 3, // fan-out per round
  gossipToTheDeadMs: 30_000, // a wrongly dead node has 30 s to hear of it
  pushPullIntervalMs: 30_000, // anti-entropy every 30 s
  reclaimMs: 10 * 60_000, // dead/left shown for 10 min, then reaped
  tombstoneMs: 24 * 3600_000, // stale news ignored for a day after reaping
  maxBroadcasts: 1024,
  maxMembers: 4096
})

/**
 * memberlist's DefaultWANConfig: members across the internet; slower,
 * tolerant of lossy and high-latency paths.
 */
export const WAN: Readonly<SwimConfig> = Object.freeze({
  ...LAN,
  name: 'wan',
  probeIntervalMs: 5000, // probing is the main steady cost on slow links
  probeTimeoutMs: 3000, // round trips of a second or more happen
  suspicionMult: 6, // more time to refute across lossy paths
  gossipIntervalMs: 500,
  gossipNodes: 4, // wider fan-out makes up for the slower rounds
  gossipToTheDeadMs: 60_000,
  pushPullIntervalMs: 60_000
})

/**
 * Edge nodes: behind NAT or relays, on links that sleep and stall (cellular,
 * satellite). WAN-like with still more patience, so a stalled link does not
 * become a false `dead`.
 */
export const EDGE: Readonly<SwimConfig> = Object.freeze({
  ...WAN,
  name: 'edge',
  probeIntervalMs: 5000,
  probeTimeoutMs: 4000, // relayed round trips are slow
  suspicionMult: 8, // min suspicion 40 s at N ≤ 10
  gossipIntervalMs: 1000, // fewer wake-ups on battery-powered links
  gossipNodes: 3,
  pushPullIntervalMs: 120_000
})

export const PROFILES = { lan: LAN, wan: WAN, edge: EDGE } as const
export type ProfileName = keyof typeof PROFILES

export class SwimConfigError extends Error {
  override name = 'SwimConfigError'
}

/** Rounds a time up to whole ticks (at least one). */
export function ticksOf (ms: number, tickMs: number): number {
  return Math.max(1, Math.ceil(ms / tickMs))
}

/** Checks a config and returns a frozen copy; errors name the field and its value. */
export function checkConfig (config: SwimConfig): Readonly<SwimConfig> {
  const positive: Array<keyof SwimConfig> = ['tickMs', 'probeIntervalMs', 'probeTimeoutMs', 'suspicionMult', 'suspicionMaxTimeoutMult',
    'awarenessMaxMultiplier', 'retransmitMult', 'gossipIntervalMs', 'gossipNodes', 'gossipToTheDeadMs', 'reclaimMs', 'tombstoneMs',
    'maxBroadcasts', 'maxMembers']
  for (const k of positive) {
    const v = config[k]
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new SwimConfigError(`swim config: ${k} must be a positive number, got ${String(v)}`)
  }
  if (!Number.isInteger(config.indirectChecks) || config.indirectChecks < 0) throw new SwimConfigError(`swim config: indirectChecks must be an integer ≥ 0, got ${config.indirectChecks}`)
  if (!(config.pushPullIntervalMs >= 0)) throw new SwimConfigError(`swim config: pushPullIntervalMs must be ≥ 0, got ${config.pushPullIntervalMs}`)
  if (config.probeTimeoutMs >= config.probeIntervalMs) throw new SwimConfigError(`swim config: probeTimeoutMs (${config.probeTimeoutMs}) must be below probeIntervalMs (${config.probeIntervalMs})`)
  if (config.suspicionMaxTimeoutMult < 1) throw new SwimConfigError(`swim config: suspicionMaxTimeoutMult must be ≥ 1, got ${config.suspicionMaxTimeoutMult}`)
  return Object.freeze({ ...config })
}

/** A profile with some fields overridden (tests shrink the intervals). */
export function profile (name: ProfileName, overrides: Partial<SwimConfig> = {}): Readonly<SwimConfig> {
  return checkConfig({ ...PROFILES[name], ...overrides })
}

