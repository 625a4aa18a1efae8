// `images --cluster`: which members hold each cluster image's blobs now,
// not only those that took them at push time (a holder may have died or
// been collected; a member that pulled or ran the image holds it too).
// This node answers from its store; every other live member is asked with
// the piece exchange's `have?`, bounded by PROBE_TIMEOUT_MS: one that does
// not answer in time counts as not holding.
import type { BlobStore } from '../../p2p/content/blob-store.js'
import type { Catalog, CatalogImage } from './catalog.js'

/** How long one member is given to say whether it holds a blob. */
export const REPLICA_PROBE_TIMEOUT_MS = 3_000

export interface ReplicaCountInit {
  catalog: Catalog
  store: BlobStore
  self: string
  /** Live members other than this one. */
  members: string[]
  /** Whether `peer` holds all of `digest`. */
  peerHas: (peer: string, digest: string, signal: AbortSignal) => Promise<boolean>
  signal?: AbortSignal
}

/** The blobs of a cluster manifest, an index's children's included (this replica's view). */
export function blobsOf (catalog: Catalog, digest: string, depth = 0): string[] {
  const m = catalog.manifestLocal(digest)
  if (m === undefined || depth > 2) return []
  return [...m.blobs.map(b => b.digest), ...m.children.flatMap(c => blobsOf(catalog, c.digest, depth + 1))]
}

/** Every catalog image with `holders` set to the members that hold each of its blobs now. */
export async function withCurrentHolders (o: ReplicaCountInit): Promise<CatalogImage[]> {
  const images = o.catalog.images()
  const byDigest = new Map<string, Promise<string[]>>()
  const holdersOf = async (digest: string): Promise<string[]> => {
    const blobs = [...new Set(blobsOf(o.catalog, digest))]
    const holds = async (member: string): Promise<boolean> => {
      if (member === o.self) return blobs.every(b => o.store.hasSync(b))
      const signal = AbortSignal.any([AbortSignal.timeout(REPLICA_PROBE_TIMEOUT_MS), ...(o.signal !== undefined ? [o.signal] : [])])
      // A member that does not answer in time is not counted as a holder: the count is of copies reachable now.
      for (const b of blobs) if (!await o.peerHas(member, b, signal).catch(() => false)) return false
      return true
    }
    const members = [o.self, ...o.members.filter(m => m !== o.self)]
    const answers = await Promise.all(members.map(holds))
    return members.filter((_, i) => answers[i] === true)
  }
  for (const i of images) if (!byDigest.has(i.digest)) byDigest.set(i.digest, holdersOf(i.digest))
  return await Promise.all(images.map(async i => ({ ...i, holders: await (byDigest.get(i.digest) as Promise<string[]>) })))
}
