// Reading an OCI image layout on disk (index.json → manifest → config, layers),
// every blob checked against its descriptor's digest and size before use.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { DigestMismatchError, ImageLayoutError, UnsupportedLayerError } from '../errors.js'

/** Manifests and configs are small; refuse anything larger rather than buffer it. */
export const MAX_JSON_BLOB_BYTES = 4 * 1024 * 1024

const DigestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/, 'a sha256:<64 hex> digest')

export const DescriptorSchema = z.object({
  mediaType: z.string(),
  digest: DigestSchema,
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: z.object({ architecture: z.string(), os: z.string(), variant: z.string().optional() }).optional()
})
export type Descriptor = z.infer<typeof DescriptorSchema>

const IndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(DescriptorSchema).max(4096)
})

const ManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: DescriptorSchema,
  layers: z.array(DescriptorSchema).max(256)
})
export type ImageManifest = z.infer<typeof ManifestSchema>

/** The parts of an OCI image config a runtime uses. */
export const ImageConfigSchema = z.object({
  architecture: z.string().optional(),
  os: z.string().optional(),
  config: z.object({
    User: z.string().optional(),
    Env: z.array(z.string()).nullish(),
    Entrypoint: z.array(z.string()).nullish(),
    Cmd: z.array(z.string()).nullish(),
    WorkingDir: z.string().optional(),
    StopSignal: z.string().optional()
  }).passthrough().optional(),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(DigestSchema) })
}).passthrough()
export type ImageConfig = z.infer<typeof ImageConfigSchema>

export type LayerCompression = 'none' | 'gzip' | 'zstd'

export interface ResolvedImage {
  /** Digest of the image manifest: the image's identity. */
  id: string
  manifest: ImageManifest
  config: ImageConfig
  layers: Array<{ descriptor: Descriptor, compression: LayerCompression, diffId: string, blobPath: string }>
}

const INDEX_MEDIA_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json'
])

export function layerCompression (mediaType: string): LayerCompression {
  const base = mediaType.replace('.nondistributable', '')
  switch (base) {
    case 'application/vnd.oci.image.layer.v1.tar': return 'none'
    case 'application/vnd.oci.image.layer.v1.tar+gzip':
    case 'application/vnd.docker.image.rootfs.diff.tar.gzip': return 'gzip'
    case 'application/vnd.oci.image.layer.v1.tar+zstd': return 'zstd'
    default:
      throw new UnsupportedLayerError(`layer media type ${mediaType} is not supported (expected an OCI tar, tar+gzip or tar+zstd layer)`)
  }
}

export function blobPath (layoutDir: string, digest: string): string {
  const [algo, hex] = digest.split(':') as [string, string]
  return join(layoutDir, 'blobs', algo, hex)
}

/** Hashes a blob file and compares digest and size with its descriptor. */
export async function verifyBlob (path: string, d: Pick<Descriptor, 'digest' | 'size'>): Promise<void> {
  let st
  try {
    st = await stat(path)
  } catch {
    throw new ImageLayoutError(`blob ${d.digest} is missing from the image layout (looked for ${path})`)
  }
  if (st.size !== d.size) {
    throw new DigestMismatchError(`blob ${d.digest} is ${st.size} bytes, its descriptor says ${d.size}: the layout is corrupt, pull the image again`)
  }
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  const got = `sha256:${h.digest('hex')}`
  if (got !== d.digest) {
    throw new DigestMismatchError(`blob ${d.digest} hashes to ${got}: the layout is corrupt, pull the image again`)
  }
}

async function readJsonBlob (layoutDir: string, d: Descriptor): Promise<unknown> {
  if (d.size > MAX_JSON_BLOB_BYTES) throw new ImageLayoutError(`blob ${d.digest} is ${d.size} bytes, more than the ${MAX_JSON_BLOB_BYTES} allowed for a manifest or config`)
  const path = blobPath(layoutDir, d.digest)
  await verifyBlob(path, d)
  return parseJson(await readFile(path, 'utf8'), d.digest)
}

function parseJson (text: string, what: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new ImageLayoutError(`${what} is not valid JSON: ${(err as Error).message}`)
  }
}

function parseWith<T> (schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value)
  if (!r.success) throw new ImageLayoutError(`${what} does not match the OCI schema: ${r.error.issues.map(i => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  return r.data
}

function goArch (): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }
  return map[process.arch] ?? process.arch
}

function matchesRef (d: Descriptor, ref: string): boolean {
  if (d.digest === ref) return true
  const name = d.annotations?.['org.opencontainers.image.ref.name']
  if (name === undefined) return false
  if (name === ref) return true
  // "busybox:latest" matches an entry annotated "latest", and the other way round.
  const tag = (r: string): string => r.includes(':') ? r.slice(r.lastIndexOf(':') + 1) : r
  return tag(ref) === name || tag(name) === ref
}

/**
 * Resolves `ref` (a ref name annotation, a tag, or a manifest digest) in the
 * layout at `layoutDir`; descends through image indexes to this platform's manifest.
 */
export async function resolveImage (layoutDir: string, ref: string): Promise<ResolvedImage> {
  let indexText: string
  try {
    indexText = await readFile(join(layoutDir, 'index.json'), 'utf8')
  } catch {
    throw new ImageLayoutError(`${layoutDir} is not an OCI image layout (no index.json)`)
  }
  let index = parseWith(IndexSchema, parseJson(indexText, 'index.json'), 'index.json')
  let candidates = index.manifests.filter(d => matchesRef(d, ref))
  if (candidates.length === 0 && index.manifests.length === 1 && ref === '') candidates = index.manifests
  if (candidates.length === 0) {
    const known = index.manifests.map(d => d.annotations?.['org.opencontainers.image.ref.name'] ?? d.digest)
    throw new ImageLayoutError(`image ${ref} is not in ${layoutDir} (it has: ${known.join(', ') || 'nothing'})`)
  }
  let desc = candidates[0] as Descriptor
  for (let depth = 0; INDEX_MEDIA_TYPES.has(desc.mediaType); depth++) {
    if (depth > 4) throw new ImageLayoutError(`image ${ref}: image indexes nest more than 4 deep`)
    index = parseWith(IndexSchema, await readJsonBlob(layoutDir, desc), `index ${desc.digest}`)
    const arch = goArch()
    const pick = index.manifests.find(m => m.platform?.os === 'linux' && m.platform.architecture === arch)
    if (pick === undefined) throw new ImageLayoutError(`image ${ref} has no manifest for linux/${arch}`)
    desc = pick
  }
  const manifest = parseWith(ManifestSchema, await readJsonBlob(layoutDir, desc), `manifest ${desc.digest}`)
  const config = parseWith(ImageConfigSchema, await readJsonBlob(layoutDir, manifest.config), `config ${manifest.config.digest}`)
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new ImageLayoutError(`image ${ref}: config lists ${config.rootfs.diff_ids.length} diff_ids for ${manifest.layers.length} layers`)
  }
  const layers = manifest.layers.map((d, i) => ({
    descriptor: d,
    compression: layerCompression(d.mediaType),
    diffId: config.rootfs.diff_ids[i] as string,
    blobPath: blobPath(layoutDir, d.digest)
  }))
  return { id: desc.digest, manifest, config, layers }
}
