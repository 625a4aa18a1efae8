// OCI image manifests, indexes and Docker schema 2 equivalents: media types,
// zod schemas, and choosing this node's platform from an index.
import { z } from 'zod'
import { ManifestError, PlatformNotFoundError } from './errors.js'

export const MT_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const MT_OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const MT_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const MT_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const MT_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const MANIFEST_ACCEPT = [MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST].join(', ')
/** Manifests are small; a bigger one is refused rather than buffered. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

const DigestString = z.string().regex(/^sha256:[a-f0-9]{64}$/)

export const PlatformSchema = z.object({
  architecture: z.string(),
  os: z.string(),
  variant: z.string().optional(),
  'os.version': z.string().optional()
})
export type Platform = z.infer<typeof PlatformSchema>

export const DescriptorSchema = z.object({
  mediaType: z.string(),
  digest: DigestString,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: PlatformSchema.optional()
})
export type Descriptor = z.infer<typeof DescriptorSchema>

export const ImageManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: DescriptorSchema,
  layers: z.array(DescriptorSchema),
  annotations: z.record(z.string(), z.string()).optional()
})
export type ImageManifest = z.infer<typeof ImageManifestSchema>

export const ImageIndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(DescriptorSchema),
  annotations: z.record(z.string(), z.string()).optional()
})
export type ImageIndex = z.infer<typeof ImageIndexSchema>

export function isIndexMediaType (mt: string): boolean {
  return mt === MT_OCI_INDEX || mt === MT_DOCKER_LIST
}

export function isManifestMediaType (mt: string): boolean {
  return mt === MT_OCI_MANIFEST || mt === MT_DOCKER_MANIFEST
}

/** The media type of a manifest body: from the body when it says, else from the response header. */
export function manifestMediaType (bytes: Uint8Array, headerType: string | null): string {
  const body = parseJson(bytes)
  const mt = typeof body === 'object' && body !== null && 'mediaType' in body && typeof body.mediaType === 'string' ? body.mediaType : undefined
  if (mt !== undefined) return mt
  if (headerType !== null && headerType !== '') return headerType.split(';')[0]!.trim()
  if (typeof body === 'object' && body !== null && 'manifests' in body) return MT_OCI_INDEX
  return MT_OCI_MANIFEST
}

export function parseJson (bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch (err) {
    throw new ManifestError('manifest is not valid JSON', { cause: err })
  }
}

export function parseImageManifest (bytes: Uint8Array): ImageManifest {
  const r = ImageManifestSchema.safeParse(parseJson(bytes))
  if (!r.success) throw new ManifestError(`not an image manifest: ${r.error.issues[0]?.message ?? 'invalid'}`)
  return r.data
}

export function parseImageIndex (bytes: Uint8Array): ImageIndex {
  const r = ImageIndexSchema.safeParse(parseJson(bytes))
  if (!r.success) throw new ManifestError(`not an image index: ${r.error.issues[0]?.message ?? 'invalid'}`)
  return r.data
}

/** This process's platform in OCI words. */
export function hostPlatform (): Platform {
  const archMap: Record<string, { architecture: string, variant?: string }> = {
    x64: { architecture: 'amd64' },
    arm64: { architecture: 'arm64', variant: 'v8' },
    arm: { architecture: 'arm', variant: 'v7' },
    ia32: { architecture: '386' },
    ppc64: { architecture: 'ppc64le' },
    s390x: { architecture: 's390x' },
    riscv64: { architecture: 'riscv64' }
  }
  const a = archMap[process.arch] ?? { architecture: process.arch }
  return { os: 'linux', ...a }
}

/** Picks the manifest for `platform` from an index (variant matched when both say one; arm64 treats a missing variant as v8). */
export function selectPlatform (index: ImageIndex, platform: Platform): Descriptor {
  const norm = (p: Platform): string => `${p.os}/${p.architecture}`
  const candidates = index.manifests.filter(d => d.platform !== undefined && norm(d.platform) === norm(platform))
  const exact = candidates.find(d => (d.platform?.variant ?? (platform.architecture === 'arm64' ? 'v8' : undefined)) === platform.variant)
  const pick = exact ?? candidates.find(d => d.platform?.variant === undefined) ?? candidates[0]
  if (pick === undefined) {
    const have = index.manifests.map(d => d.platform === undefined ? '?' : `${norm(d.platform)}${d.platform.variant !== undefined ? '/' + d.platform.variant : ''}`).join(', ')
    throw new PlatformNotFoundError(`image has no manifest for ${norm(platform)} (it has: ${have || 'none'})`)
  }
  return pick
}
