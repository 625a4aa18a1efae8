// Reading cluster images: a manifest from the catalog (inline bytes, else the
// blob from its holders), blobs from this node's store or from peers through
// the piece exchange — never from an upstream registry. Used by the registry
// endpoint's reads and by capsule starts of `bolt.local/…` images, which are
// written as an OCI layout for the runtime.
import { copyFile, link, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { BlobStore } from '../../p2p/content/blob-store.js'
import type { ClusterResolved } from '../../p2p/content/image-puller.js'
import type { PieceExchange } from '../../p2p/content/piece-exchange.js'
import { hostPlatform, parseImageIndex, parseImageManifest, selectPlatform } from '../../p2p/content/oci.js'
import { MirrorRequestError } from '../mirror/errors.js'
import { CATALOG_READ_TIMEOUT_MS, CLUSTER_REGISTRY, splitRef, type Catalog, type ManifestRecord } from './catalog.js'
import { sha256 } from './manifest-check.js'

/** How long a blob's size is asked of peers before it counts as unknown. */
export const PROBE_TIMEOUT_MS = 5_000

export interface ClusterContentInit {
  store: BlobStore
  exchange: PieceExchange
  catalog: Catalog
  /** Members to ask for pieces (alive and suspect ones). */
  candidates: () => string[]
  log?: { warn: (obj: object, msg: string) => void }
}

export interface ClusterManifest { digest: string, mediaType: string, bytes: Uint8Array, record: ManifestRecord }

export class ClusterContent {
  constructor (private readonly o: ClusterContentInit) {}

  /**
   * Every candidate, the holders among them in random order before the rest
   * (the member pushed to is the first holder recorded: asking it first
   * everywhere made it serve most pieces of a fan-out).
   */
  private sources (holders: string[] = []): string[] {
    const all = this.o.candidates()
    const held = holders.filter(h => all.includes(h)).sort(() => Math.random() - 0.5)
    return [...held, ...all.filter(c => !holders.includes(c)).sort(() => Math.random() - 0.5)]
  }

  /** The manifest `reference` (tag or digest) of `repo`, verified; undefined when the catalog has none. */
  async manifest (repo: string, reference: string, signal?: AbortSignal): Promise<ClusterManifest | undefined> {
    const { catalog, store } = this.o
    let digest = reference
    if (!reference.startsWith('sha256:')) {
      const tag = await catalog.tag(repo, reference, signal)
      if (tag === undefined) return undefined
      digest = tag.digest
    }
    const record = await catalog.manifest(digest, signal)
    if (record === undefined) return undefined
    let bytes: Uint8Array
    if (store.hasSync(digest)) bytes = await store.readAll(digest)
    else if (record.data !== undefined) bytes = new Uint8Array(Buffer.from(record.data, 'base64'))
    else {
      await this.blob(digest, record.size, record.holders, signal)
      bytes = await store.readAll(digest)
    }
    if (sha256(bytes) !== digest) throw new MirrorRequestError(502, 'UNAVAILABLE', `the cluster's copy of manifest ${digest} does not match its digest`)
    if (!store.hasSync(digest)) await store.put(bytes, digest)
    return { digest, mediaType: record.mediaType, bytes, record }
  }

  /**
   * Makes sure `digest` is in this node's store, pulling it from peers
   * (verified by the exchange). Returns its size; undefined when no member
   * holds it.
   */
  async blob (digest: string, size: number | undefined, holders: string[] = [], signal?: AbortSignal): Promise<number | undefined> {
    const { store, exchange } = this.o
    const have = store.sizeSync(digest)
    if (have !== undefined) return have
    const candidates = this.sources(holders)
    const known = size ?? await exchange.probeSize(digest, candidates, AbortSignal.any([AbortSignal.timeout(PROBE_TIMEOUT_MS), ...(signal !== undefined ? [signal] : [])])).catch(() => undefined) // no member answered in time: not in the cluster
    if (known === undefined) return undefined
    await exchange.pull(digest, { size: known, candidates, ...(signal !== undefined ? { signal } : {}) })
    return store.sizeSync(digest)
  }

  /**
   * `bolt-agent pull` of a cluster image: `repo` at `reference` resolved to
   * this host's platform (an index's manifest for it, the index beside it),
   * verified; undefined when the catalog has none.
   */
  async resolve (repo: string, reference: string, signal?: AbortSignal): Promise<ClusterResolved | undefined> {
    const top = await this.manifest(repo, reference, signal)
    if (top === undefined || top.record.children.length === 0) return top === undefined ? undefined : { digest: top.digest, bytes: top.bytes, mediaType: top.mediaType, holders: top.record.holders }
    const chosen = selectPlatform(parseImageIndex(top.bytes), hostPlatform())
    const m = await this.manifest(repo, chosen.digest, signal)
    if (m === undefined) throw new MirrorRequestError(404, 'MANIFEST_UNKNOWN', `image ${CLUSTER_REGISTRY}/${repo}:${reference}: its manifest for this platform is not in the cluster`)
    return { digest: m.digest, bytes: m.bytes, mediaType: m.mediaType, index: { digest: top.digest, bytes: top.bytes }, holders: m.record.holders }
  }

  /**
   * A capsule start from a tag: records what the tag names in the Raft state
   * (gc.ts keeps that image while a capsule's spec names the tag); when the
   * tag is gone, the image it named at the last start is used instead, so a
   * restart runs what was running.
   */
  private async rememberResolved (repo: string, tag: string, m: ClusterManifest | undefined, signal?: AbortSignal): Promise<ClusterManifest | undefined> {
    const { catalog } = this.o
    const last = catalog.resolvedLocal(repo, tag)
    if (m === undefined) {
      if (last === undefined) return undefined
      this.o.log?.warn({ image: `${CLUSTER_REGISTRY}/${repo}:${tag}`, digest: last.digest }, 'cluster image: the tag is gone; starting the image it named at the last start')
      return await this.manifest(repo, last.digest, signal)
    }
    if (last?.digest !== m.digest) {
      const bounded = AbortSignal.any([AbortSignal.timeout(CATALOG_READ_TIMEOUT_MS), ...(signal !== undefined ? [signal] : [])])
      await catalog.putResolved(repo, tag, { digest: m.digest, at: Date.now() }, bounded).catch((err: Error) => {
        if (signal?.aborted === true) throw err
        this.o.log?.warn({ image: `${CLUSTER_REGISTRY}/${repo}:${tag}`, err: err.message }, 'cluster image: cannot record what the tag names for gc; the image may be collected if its tag is deleted while a capsule uses it')
      })
    }
    return m
  }

  /** Whether `ref` (`bolt.local/repo:tag` or `@sha256:…`) names an image in the catalog. */
  async has (ref: string, signal?: AbortSignal): Promise<boolean> {
    const { repo, reference } = splitClusterRef(ref)
    return (await this.o.catalog.manifest(reference.startsWith('sha256:') ? reference : ((await this.o.catalog.tag(repo, reference, signal))?.digest ?? 'none'), signal)) !== undefined
  }

  /**
   * Writes the image `ref` names as a one-image OCI layout in `dir` for the
   * runtime (an index is resolved to this host's platform). Blobs come from
   * this node or its peers; they are pinned under `registry-run:<digest>`.
   */
  async exportLayout (ref: string, dir: string, signal?: AbortSignal): Promise<{ digest: string }> {
    const { repo, reference } = splitClusterRef(ref)
    let m = await this.manifest(repo, reference, signal)
    if (!reference.startsWith('sha256:')) m = await this.rememberResolved(repo, reference, m, signal)
    if (m === undefined) throw new MirrorRequestError(404, 'MANIFEST_UNKNOWN', `image ${ref} is not in the cluster (push it to any agent's registry endpoint)`)
    if (m.record.children.length > 0) {
      const chosen = selectPlatform(parseImageIndex(m.bytes), hostPlatform())
      m = await this.manifest(repo, chosen.digest, signal)
      if (m === undefined) throw new MirrorRequestError(404, 'MANIFEST_UNKNOWN', `image ${ref}: its manifest for this platform is not in the cluster`)
    }
    const parsed = parseImageManifest(m.bytes)
    const blobs = [parsed.config, ...parsed.layers]
    for (const b of blobs) {
      if (await this.blob(b.digest, b.size, m.record.holders, signal) === undefined) throw new MirrorRequestError(404, 'BLOB_UNKNOWN', `image ${ref}: no member holds blob ${b.digest}`)
    }
    await this.o.store.pin(`registry-run:${m.digest}`, [m.digest, ...blobs.map(b => b.digest)])
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
    for (const digest of [m.digest, ...blobs.map(b => b.digest)]) {
      const dest = join(dir, 'blobs', 'sha256', digest.slice(7))
      await link(this.o.store.blobPath(digest), dest).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') await copyFile(this.o.store.blobPath(digest), dest)
      })
    }
    await writeFile(join(dir, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, annotations: { 'org.opencontainers.image.ref.name': ref } }]
    }))
    return { digest: m.digest }
  }
}

/** `bolt.local/team/app:1` → { repo: 'team/app', reference: '1' }; `@sha256:…` → the digest; no tag → `latest`. */
export function splitClusterRef (ref: string): { repo: string, reference: string } {
  return splitRef(ref.startsWith(CLUSTER_REGISTRY + '/') ? ref.slice(CLUSTER_REGISTRY.length + 1) : ref)
}
