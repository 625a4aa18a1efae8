// Admission's options and their defaults, resolved once.
import type { ClusterSecrets } from './secrets.js'

export interface AdmissionInit {
  /** Absent until this node has joined: then only `join()` works. */
  secrets?: ClusterSecrets
  /** Peers evicted from the cluster (oldest first; at most MAX_EVICTED are kept). */
  evicted?: Iterable<string>
  /** Called when secrets are learned or rotated, so the caller persists them. */
  onSecrets?: (s: ClusterSecrets) => void
  /** Called when the evicted list changes, so the caller persists it. */
  onEvicted?: (ids: string[]) => void
  /**
   * Whether a peer id is a member this node knows (its member list): only
   * those may prove the previous cluster key and be handed the new one.
   */
  knownMember?: (peerId: string) => boolean
  /** Members to hand a joiner in the welcome. */
  members?: () => Array<{ id: string, addrs: string[] }>
  /** How long an unadmitted inbound connection may stay open to run admission. */
  graceMs?: number
  /** Admission attempts allowed per remote peer in each window. */
  attemptsPerWindow?: number
  windowMs?: number
  /** How long a peer that failed a proof is refused. */
  banMs?: number
  /**
   * Failed proofs allowed from one source address (an IPv4 address, an
   * IPv6 /64) within banMs; past it the source is refused until the window
   * ends. Per address, since a peer id costs nothing to replace.
   */
  failuresPerSource?: number
  log?: (msg: string) => void
}

export const DEFAULT_GRACE_MS = 10_000
export const DEFAULT_ATTEMPTS_PER_WINDOW = 5
export const DEFAULT_WINDOW_MS = 10_000
export const DEFAULT_BAN_MS = 30_000
export const DEFAULT_FAILURES_PER_SOURCE = 10

export type AdmissionOptions = Required<Omit<AdmissionInit, 'secrets' | 'evicted'>>

export function resolveOptions (init: AdmissionInit): AdmissionOptions {
  return {
    onSecrets: init.onSecrets ?? (() => {}),
    onEvicted: init.onEvicted ?? (() => {}),
    knownMember: init.knownMember ?? (() => false),
    members: init.members ?? (() => []),
    graceMs: init.graceMs ?? DEFAULT_GRACE_MS,
    attemptsPerWindow: init.attemptsPerWindow ?? DEFAULT_ATTEMPTS_PER_WINDOW,
    windowMs: init.windowMs ?? DEFAULT_WINDOW_MS,
    banMs: init.banMs ?? DEFAULT_BAN_MS,
    failuresPerSource: init.failuresPerSource ?? DEFAULT_FAILURES_PER_SOURCE,
    log: init.log ?? (() => {})
  }
}
