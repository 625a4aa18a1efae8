// A manifest pushed to the cluster, checked before anything is stored: its
// digest (when pushed by digest), that it is an OCI or Docker schema 2 image
// manifest or index (or an OCI artifact manifest carrying a config), and the
// descriptors it names, which must be in the cluster before it is accepted.
import { createHash } from 'node:crypto'
import { z } from 'zod'
import { MAX_MANIFEST_BYTES, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST } from '../../p2p/content/oci.js'
import { MirrorRequestError } from '../mirror/errors.js'

const Digest = z.string().regex(/^sha256:[a-f0-9]{64}$/)
const Descriptor = z.object({
  mediaType: z.string().min(1).max(255),
  digest: Digest,
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  urls: z.array(z.string().max(2048)).max(16).optional(),
  annotations: z.record(z.string().max(1024), z.string().max(64 * 1024)).optional(),
  platform: z.object({ architecture: z.string().max(64), os: z.string().max(64), variant: z.string().max(64).optional() }).loose().optional(),
  artifactType: z.string().max(255).optional()
}).loose()
export type PushedDescriptor = z.infer<typeof Descriptor>

const MAX_DESCRIPTORS = 1_000
const ManifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().max(255).optional(),
  artifactType: z.string().max(255).optional(),
  config: Descriptor,
  layers: z.array(Descriptor).max(MAX_DESCRIPTORS),
  subject: Descriptor.optional()
}).loose()
const IndexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().max(255).optional(),
  manifests: z.array(Descriptor).max(MAX_DESCRIPTORS),
  subject: Descriptor.optional()
}).loose()

export const PUSHABLE_MANIFEST_TYPES = [MT_OCI_MANIFEST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_DOCKER_LIST] as const

export interface CheckedManifest {
  digest: string
  mediaType: string
  kind: 'manifest' | 'index'
  /** Blobs it names (config, layers): each must be in the cluster. */
  blobs: Array<{ digest: string, size: number }>
  /** Manifests an index names: each must be a cluster manifest. */
  children: Array<{ digest: string, size: number }>
  subject?: string
  /** The referrers API's artifactType: the manifest's own, else its config's media type. */
  artifactType?: string
}

export function sha256 (b: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex')
}

function invalid (msg: string): MirrorRequestError {
  return new MirrorRequestError(400, 'MANIFEST_INVALID', msg)
}

/**
 * Checks a pushed manifest: `reference` is the tag or digest of the URL,
 * `contentType` the request's Content-Type. A digest reference must match
 * the bytes (`DIGEST_INVALID`); the body's own `mediaType`, when it has one,
 * must agree with the Content-Type.
 */
export function checkPushedManifest (bytes: Uint8Array, reference: string, contentType: string | undefined): CheckedManifest {
  if (bytes.length > MAX_MANIFEST_BYTES) throw new MirrorRequestError(413, 'SIZE_INVALID', `manifest of ${bytes.length} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`)
  const digest = sha256(bytes)
  if (reference.startsWith('sha256:') && reference !== digest) throw new MirrorRequestError(400, 'DIGEST_INVALID', `manifest bytes hash to ${digest}, not ${reference}`)
  let raw: unknown
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch {
    throw invalid('the manifest is not JSON')
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('the manifest is not a JSON object')
  const header = contentType?.split(';')[0]?.trim().toLowerCase()
  const bodyType = (raw as { mediaType?: unknown }).mediaType
  if (bodyType !== undefined && typeof bodyType !== 'string') throw invalid('mediaType is not a string')
  if (header !== undefined && header !== '' && bodyType !== undefined && header !== bodyType) throw invalid(`Content-Type ${header} and the manifest's mediaType ${bodyType} differ`)
  const mediaType = bodyType ?? (header !== undefined && header !== '' && header !== 'application/json' ? header : ('manifests' in raw ? MT_OCI_INDEX : MT_OCI_MANIFEST))
  if (!(PUSHABLE_MANIFEST_TYPES as readonly string[]).includes(mediaType)) throw invalid(`unsupported manifest media type ${JSON.stringify(mediaType.slice(0, 100))} (one of ${PUSHABLE_MANIFEST_TYPES.join(', ')})`)
  if (mediaType === MT_OCI_INDEX || mediaType === MT_DOCKER_LIST) {
    const r = IndexSchema.safeParse(raw)
    if (!r.success) throw invalid(`invalid image index: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? ''}`.trim())
    return { digest, mediaType, kind: 'index', blobs: [], children: r.data.manifests.map(d => ({ digest: d.digest, size: d.size })), ...(r.data.subject !== undefined ? { subject: r.data.subject.digest } : {}) }
  }
  const r = ManifestSchema.safeParse(raw)
  if (!r.success) throw invalid(`invalid image manifest: ${r.error.issues[0]?.path.join('.') ?? ''} ${r.error.issues[0]?.message ?? ''}`.trim())
  const blobs = new Map<string, number>()
  for (const d of [r.data.config, ...r.data.layers]) {
    const known = blobs.get(d.digest)
    if (known !== undefined && known !== d.size) throw invalid(`blob ${d.digest} is named with two sizes`)
    blobs.set(d.digest, d.size)
  }
  const artifactType = r.data.artifactType ?? r.data.config.mediaType
  return { digest, mediaType, kind: 'manifest', blobs: [...blobs].map(([digest, size]) => ({ digest, size })), children: [], artifactType, ...(r.data.subject !== undefined ? { subject: r.data.subject.digest } : {}) }
}
