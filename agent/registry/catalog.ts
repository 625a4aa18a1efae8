// The cluster's own image catalog in the Raft KV (the existing `put` and
// `delete` commands, which any member may issue):
//
//   registry/tags/<repo>:<tag>      → { digest, mediaType, size, at }
//   registry/manifests/<digest>     → { mediaType, size, data?, blobs, children, holders, at }
//   registry/resolved/<repo>:<tag>  → { digest, at }: what the tag named when
//                                     a capsule last started from it (gc.ts
//                                     keeps that image while a capsule's spec
//                                     names the tag, even once it is deleted)
//
// `data` is the manifest's bytes in base64 when they fit a KV value (most
// manifests do); larger ones are read from their holders as a blob. `holders`
// are the members that took every blob of the manifest before the push was
// acknowledged. Every record is read through a zod schema: a malformed value
// reads as absent.
import { z } from 'zod'
import type { CommandInput, CommandResult } from '../state/cluster-state.js'
import { MAX_VALUE_BYTES } from '../state/commands.js'
import { parseKvRecord, readKvRecord, type KvReader } from '../state/kv-record.js'

export const TAG_PREFIX = 'registry/tags/'
export const MANIFEST_PREFIX = 'registry/manifests/'
export const RESOLVED_PREFIX = 'registry/resolved/'
/** The registry host that names cluster images (`bolt.local/app:1`). */
export const CLUSTER_REGISTRY = 'bolt.local'
/** Linearizable reads wait this long before falling back to this replica's state. */
export const CATALOG_READ_TIMEOUT_MS = 2_000
/** How long a listing waits for the cluster's latest state (an election after a leader's death included). */
export const CATALOG_SYNC_TIMEOUT_MS = 10_000
/** Manifest bytes kept inline in the record at most (base64 must fit a KV value with room for the rest). */
export const MAX_INLINE_MANIFEST = Math.floor((MAX_VALUE_BYTES - 8 * 1024) * 3 / 4)
export const MAX_TAGS_LISTED = 10_000

const Digest = z.string().regex(/^sha256:[a-f0-9]{64}$/)
const BlobRef = z.object({ digest: Digest, size: z.number().int().nonnegative() })
export const TagRecordSchema = z.object({ digest: Digest, mediaType: z.string().max(255), size: z.number().int().nonnegative(), at: z.number() })
export type TagRecord = z.infer<typeof TagRecordSchema>
export const ResolvedRecordSchema = z.object({ digest: Digest, at: z.number() })
export type ResolvedRecord = z.infer<typeof ResolvedRecordSchema>
export const ManifestRecordSchema = z.object({
  mediaType: z.string().max(255),
  size: z.number().int().nonnegative(),
  data: z.string().max(MAX_VALUE_BYTES).optional(),
  blobs: z.array(BlobRef).max(1_000),
  children: z.array(BlobRef).max(1_000),
  holders: z.array(z.string().max(128)).max(64),
  /** The manifest it refers to (OCI `subject`), for the referrers API. */
  subject: Digest.optional(),
  artifactType: z.string().max(255).optional(),
  at: z.number()
})
export type ManifestRecord = z.infer<typeof ManifestRecordSchema>

/** The slice of RaftHost the catalog needs. */
export interface CatalogKv extends KvReader {
  write: (cmd: CommandInput, signal?: AbortSignal) => Promise<CommandResult>
  state: KvReader['state'] & {
    keys: (prefix: string, limit?: number) => string[]
    /** The capsule table (absent in unit tests of the catalog alone): GC keeps the images their specs name. */
    capsules?: { list: () => Array<{ spec: { image: string } }> }
  }
}

export function tagKey (repo: string, tag: string): string { return `${TAG_PREFIX}${repo}:${tag}` }
export function manifestKey (digest: string): string { return MANIFEST_PREFIX + digest }
export function resolvedKey (repo: string, tag: string): string { return `${RESOLVED_PREFIX}${repo}:${tag}` }

/** A catalog entry as `images --cluster` lists it. */
export interface CatalogImage { repo: string, tag: string, digest: string, mediaType: string, bytes: number, holders: string[] }

export class Catalog {
  constructor (readonly kv: CatalogKv) {}

  async tag (repo: string, tag: string, signal?: AbortSignal): Promise<TagRecord | undefined> {
    return await readKvRecord(this.kv, tagKey(repo, tag), TagRecordSchema, CATALOG_READ_TIMEOUT_MS, signal)
  }

  async manifest (digest: string, signal?: AbortSignal): Promise<ManifestRecord | undefined> {
    return await readKvRecord(this.kv, manifestKey(digest), ManifestRecordSchema, CATALOG_READ_TIMEOUT_MS, signal)
  }

  /** This replica's record, without a round trip (routing decisions). */
  manifestLocal (digest: string): ManifestRecord | undefined {
    return parseKvRecord(ManifestRecordSchema, this.kv.state.get(manifestKey(digest)))
  }

  /** Whether `repo` has a tag in the cluster (this replica's view). */
  hasRepo (repo: string): boolean {
    return this.kv.state.keys(`${TAG_PREFIX}${repo}:`, 1).length > 0
  }

  tags (repo: string): string[] {
    const prefix = `${TAG_PREFIX}${repo}:`
    return this.kv.state.keys(prefix, MAX_TAGS_LISTED).map(k => k.slice(prefix.length)).filter(t => !t.includes(':')).sort()
  }

  /**
   * Waits until this replica has applied every write committed before the
   * call (a linearizable read), so that a listing after it shows a push
   * another agent has just acknowledged, even one whose leader died right
   * after (the new leader commits it again). Without a leader within
   * CATALOG_SYNC_TIMEOUT_MS it returns anyway: the listing is then this
   * replica's view.
   */
  async sync (signal?: AbortSignal): Promise<void> {
    const sig = AbortSignal.any([AbortSignal.timeout(CATALOG_SYNC_TIMEOUT_MS), ...(signal !== undefined ? [signal] : [])])
    await this.kv.read(TAG_PREFIX, sig).catch(() => undefined) // no leader in time: list what this replica has (see above)
  }

  /** Every tag of every repository (this replica's view; `sync` first for the cluster's). */
  images (): CatalogImage[] {
    const out: CatalogImage[] = []
    for (const key of this.kv.state.keys(TAG_PREFIX, 100_000)) {
      const name = key.slice(TAG_PREFIX.length)
      const i = name.lastIndexOf(':')
      const t = parseKvRecord(TagRecordSchema, this.kv.state.get(key))
      if (i <= 0 || t === undefined) continue
      const m = this.manifestLocal(t.digest)
      out.push({ repo: name.slice(0, i), tag: name.slice(i + 1), digest: t.digest, mediaType: t.mediaType, bytes: this.bytesOf(t.digest), holders: m?.holders ?? [] })
    }
    return out
  }

  /** Manifest plus blob bytes of a cluster manifest (and of an index's children). */
  bytesOf (digest: string, depth = 0): number {
    const m = this.manifestLocal(digest)
    if (m === undefined || depth > 2) return 0
    return m.size + m.blobs.reduce((n, b) => n + b.size, 0) + m.children.reduce((n, c) => n + this.bytesOf(c.digest, depth + 1), 0)
  }

  /** Descriptors of the manifests whose `subject` is `digest` (this replica's view). */
  referrers (digest: string, artifactType?: string): Array<{ mediaType: string, digest: string, size: number, artifactType?: string }> {
    const out: Array<{ mediaType: string, digest: string, size: number, artifactType?: string }> = []
    for (const key of this.kv.state.keys(MANIFEST_PREFIX, 1_000_000)) {
      const m = parseKvRecord(ManifestRecordSchema, this.kv.state.get(key))
      if (m?.subject !== digest || (artifactType !== undefined && m.artifactType !== artifactType)) continue
      out.push({ mediaType: m.mediaType, digest: key.slice(MANIFEST_PREFIX.length), size: m.size, ...(m.artifactType !== undefined ? { artifactType: m.artifactType } : {}) })
    }
    return out
  }

  /** Every digest (manifests and blobs) some cluster manifest still names. */
  referenced (): Set<string> {
    const out = new Set<string>()
    for (const key of this.kv.state.keys(MANIFEST_PREFIX, 1_000_000)) {
      const m = parseKvRecord(ManifestRecordSchema, this.kv.state.get(key))
      out.add(key.slice(MANIFEST_PREFIX.length))
      for (const b of m?.blobs ?? []) out.add(b.digest)
    }
    return out
  }

  async putManifest (digest: string, rec: ManifestRecord, signal?: AbortSignal): Promise<void> {
    await this.ok(await this.kv.write({ op: 'put', key: manifestKey(digest), value: JSON.stringify(rec) }, signal))
  }

  async putTag (repo: string, tag: string, rec: TagRecord, signal?: AbortSignal): Promise<void> {
    await this.ok(await this.kv.write({ op: 'put', key: tagKey(repo, tag), value: JSON.stringify(rec) }, signal))
  }

  async deleteTag (repo: string, tag: string, signal?: AbortSignal): Promise<void> {
    await this.ok(await this.kv.write({ op: 'delete', key: tagKey(repo, tag) }, signal))
  }

  async deleteManifest (digest: string, signal?: AbortSignal): Promise<void> {
    await this.ok(await this.kv.write({ op: 'delete', key: manifestKey(digest) }, signal))
  }

  /** What `repo:tag` named when a capsule last started from it (this replica's view). */
  resolvedLocal (repo: string, tag: string): ResolvedRecord | undefined {
    return parseKvRecord(ResolvedRecordSchema, this.kv.state.get(resolvedKey(repo, tag)))
  }

  async putResolved (repo: string, tag: string, rec: ResolvedRecord, signal?: AbortSignal): Promise<void> {
    await this.ok(await this.kv.write({ op: 'put', key: resolvedKey(repo, tag), value: JSON.stringify(rec) }, signal))
  }

  /**
   * Manifests that capsules in the Raft state use (this replica's view):
   * for each spec whose image is a cluster image, the digest it names, else
   * what its tag names now and what it named at the capsule's last start.
   * `refs` are the `repo:tag` the specs name (resolved records of others are stale).
   */
  pinnedByCapsules (): { digests: Set<string>, refs: Set<string> } {
    const digests = new Set<string>()
    const refs = new Set<string>()
    for (const c of this.kv.state.capsules?.list() ?? []) {
      if (!c.spec.image.startsWith(CLUSTER_REGISTRY + '/')) continue
      const { repo, reference } = splitRef(c.spec.image.slice(CLUSTER_REGISTRY.length + 1))
      if (reference.startsWith('sha256:')) { digests.add(reference); continue }
      refs.add(`${repo}:${reference}`)
      for (const d of [parseKvRecord(TagRecordSchema, this.kv.state.get(tagKey(repo, reference)))?.digest, this.resolvedLocal(repo, reference)?.digest]) if (d !== undefined) digests.add(d)
    }
    return { digests, refs }
  }

  /** `repo:tag` of every resolved record (this replica's view). */
  resolvedRefs (): string[] {
    return this.kv.state.keys(RESOLVED_PREFIX, 1_000_000).map(k => k.slice(RESOLVED_PREFIX.length))
  }

  async deleteResolved (ref: string, signal?: AbortSignal): Promise<void> {
    await this.ok(await this.kv.write({ op: 'delete', key: RESOLVED_PREFIX + ref }, signal))
  }

  /** Tags of `repo` that point at `digest`. */
  tagsOf (repo: string, digest: string): string[] {
    return this.tags(repo).filter(t => parseKvRecord(TagRecordSchema, this.kv.state.get(tagKey(repo, t)))?.digest === digest)
  }

  /** Whether any tag (any repository) or index still names `digest`. */
  isNamed (digest: string): boolean {
    for (const key of this.kv.state.keys(TAG_PREFIX, 1_000_000)) if (parseKvRecord(TagRecordSchema, this.kv.state.get(key))?.digest === digest) return true
    for (const key of this.kv.state.keys(MANIFEST_PREFIX, 1_000_000)) if (parseKvRecord(ManifestRecordSchema, this.kv.state.get(key))?.children.some(c => c.digest === digest) === true) return true
    return false
  }

  private async ok (r: CommandResult): Promise<void> {
    if (!r.ok) throw new Error(`the cluster state refused the write: ${r.reason}`)
  }
}

/** `team/app:1` → { repo: 'team/app', reference: '1' }; `@sha256:…` → the digest; no tag → `latest`. */
export function splitRef (rest: string): { repo: string, reference: string } {
  const at = rest.indexOf('@')
  if (at >= 0) return { repo: rest.slice(0, at), reference: rest.slice(at + 1) }
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) return { repo: rest.slice(0, colon), reference: rest.slice(colon + 1) }
  return { repo: rest, reference: 'latest' }
}
