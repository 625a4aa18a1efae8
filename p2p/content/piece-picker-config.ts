// The piece picker's knobs: its actions, its configuration and the default
// of every setting, with why each default is what it is (piece-picker.ts
// says how they are used).

export const DEFAULT_MAX_INFLIGHT_PER_PEER = 4
export const DEFAULT_MAX_REGISTRY_INFLIGHT = 4
/**
 * Requests to one seed (a peer holding the whole blob) while other nodes
 * pull the same blob. The seeds need to hand the swarm one copy, not one per
 * puller: with every puller keeping a full pipeline to each seed, 2 seeds
 * sent 2.6 copies to 6 pullers (picker simulation), 1.4 with the share
 * split alone and 1.2 with 2 requests per seed.
 */
export const DEFAULT_MAX_INFLIGHT_PER_SEED = 2
/** How long a piece nobody has waits for a peer that is pulling it before this node takes it from the registry. */
export const DEFAULT_REGISTRY_DEADLINE_MS = 5_000
/** A piece request unanswered this long makes its peer count as gone. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 20_000
/** Re-query a peer's bitfield this often while pieces are missing (how partial holders become sources). */
export const DEFAULT_QUERY_INTERVAL_MS = 200
/**
 * Before the first registry fetch, wait for every known peer's first
 * bitfield (they may be pulling too, and the registry share depends on how
 * many are) — but no longer than this.
 */
export const DEFAULT_START_DELAY_MS = 2_000
export const DEFAULT_ENDGAME_DUPLICATES = 2
/**
 * An endgame duplicate goes out only for a request out longer than this, or
 * than ENDGAME_SLOW_FACTOR times the average piece time of this pull if
 * that is longer (a loaded peer is not made slower by asking everyone for
 * the same piece).
 */
export const DEFAULT_ENDGAME_AFTER_MS = 1_000
/**
 * How many average piece times a request must be out before it is
 * duplicated. Under load piece times spread widely: with 8 agents pulling
 * 257 MiB through their mirrors on 2 cores, twice the average was crossed
 * by ordinary pieces, and peers sent 60-116 MiB more than the 1,800 MiB
 * needed (2 runs; pieces sent twice, and duplicates still under way when a
 * pull finished). At four times, 3 runs sent 0-1 MiB more, in no more wall
 * time (3 alternating pairs); a stalled peer is still worked around.
 */
export const ENDGAME_SLOW_FACTOR = 4
/**
 * A piece this node claims for the registry is fetched only once the claim
 * has stood this long (peers see it at their next bitfield query and yield),
 * so two pullers that start together and both think a piece is theirs do not
 * both fetch it. Costs this much once per pull.
 */
export const DEFAULT_CLAIM_SETTLE_MS = 300
/** Peers holding nothing we need are re-queried this many times less often. */
export const IDLE_QUERY_FACTOR = 5
/** A peer whose answers bring nothing new is asked at most this many times less often (doubling per answer). */
export const MAX_QUERY_BACKOFF = 8
/** After a registry failure, wait this long before the next registry request; give up after MAX failures in a row. */
export const REGISTRY_RETRY_MS = 500
/** A peer whose bitfield has not grown for this many registry deadlines is not believed when it claims pieces. */
export const COVER_FACTOR = 4
export const MAX_REGISTRY_FAILURES = 5
/** Without a registry, give up when no live peer has a missing piece for this long. */
export const DEFAULT_STALL_TIMEOUT_MS = 30_000

export type Source = string | 'registry'

export type PickerAction =
  | { type: 'request', peer: string, index: number }
  | { type: 'registry', index: number }
  | { type: 'query', peer: string }
  | { type: 'drop', peer: string, reason: 'timeout' }
  | { type: 'ban', peer: string, index: number }
  | { type: 'done' }
  | { type: 'fail', reason: string }

export interface PickerConfig {
  pieceCount: number
  /** This node's id: its rank among the nodes pulling the same blob picks its registry share. */
  self: string
  /** Whether a registry fallback exists. */
  registry: boolean
  maxInflightPerPeer?: number
  /** Requests to one seed at a time while other nodes pull the same blob (see requestFromPeers). */
  maxInflightPerSeed?: number
  maxRegistryInflight?: number
  registryDeadlineMs?: number
  requestTimeoutMs?: number
  queryIntervalMs?: number
  startDelayMs?: number
  endgameDuplicates?: number
  endgameAfterMs?: number
  stallTimeoutMs?: number
  claimSettleMs?: number
}

/** `cfg` with every unset knob at its default. */
export function withPickerDefaults (cfg: PickerConfig): Required<PickerConfig> {
  return {
    maxInflightPerPeer: DEFAULT_MAX_INFLIGHT_PER_PEER,
    maxInflightPerSeed: DEFAULT_MAX_INFLIGHT_PER_SEED,
    maxRegistryInflight: DEFAULT_MAX_REGISTRY_INFLIGHT,
    registryDeadlineMs: DEFAULT_REGISTRY_DEADLINE_MS,
    requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
    queryIntervalMs: DEFAULT_QUERY_INTERVAL_MS,
    startDelayMs: DEFAULT_START_DELAY_MS,
    endgameDuplicates: DEFAULT_ENDGAME_DUPLICATES,
    endgameAfterMs: DEFAULT_ENDGAME_AFTER_MS,
    stallTimeoutMs: DEFAULT_STALL_TIMEOUT_MS,
    claimSettleMs: DEFAULT_CLAIM_SETTLE_MS,
    ...cfg
  }
}
