// The cluster's secrets as admission holds them: the cluster key (with its
// version and the one before it, for members that missed a rotation) and
// the join secret. Pure functions over them; Admission owns the live copy.
import type { Rekey } from './messages.js'

export interface ClusterSecrets {
  clusterId: string
  clusterKey: string
  joinSecret: string
  secretVersion: number
  /** Version of clusterKey: 1 until the first `evict`, +1 at each. */
  keyVersion?: number
  /**
   * The key of version keyVersion − 1: a member that missed the rotation
   * proves it and is handed the new key (when this node knows it as a member).
   */
  previousKey?: string
}

/**
 * Evicted peer ids kept. Enough: each evict replaces the cluster key and
 * only the previous one is still accepted, so an id evicted before the
 * previous rotation holds no key anyone accepts; the list only has to cover
 * the ids evicted with the last rotation.
 */
export const MAX_EVICTED = 1024

export function keyVersionOf (s: ClusterSecrets): number { return s.keyVersion ?? 1 }

/** The cluster key of `version`, when `s` holds it (the current one or the one before). */
export function keyOf (s: ClusterSecrets | undefined, version: number): string | undefined {
  if (s === undefined) return undefined
  if (version === keyVersionOf(s)) return s.clusterKey
  if (version === keyVersionOf(s) - 1) return s.previousKey
  return undefined
}

/** What a member one key version behind is handed: the current key and the ids evicted with it. */
export function rekeyFor (s: ClusterSecrets | undefined, evicted: Iterable<string>, maxIds: number): Rekey | undefined {
  if (s === undefined || keyVersionOf(s) < 2) return undefined
  return { version: keyVersionOf(s), key: s.clusterKey, evicted: [...evicted].slice(-maxIds) }
}

/**
 * Adds `ids` to the evicted set (refreshing their place: a Set keeps
 * insertion order, oldest first) and drops the oldest past MAX_EVICTED.
 * True when an id was new.
 */
export function addEvictedIds (evicted: Set<string>, ids: string[]): boolean {
  let changed = false
  for (const id of ids) {
    if (!evicted.has(id)) changed = true
    evicted.delete(id)
    evicted.add(id)
  }
  for (const oldest of evicted) {
    if (evicted.size <= MAX_EVICTED) break
    evicted.delete(oldest)
  }
  return changed
}
