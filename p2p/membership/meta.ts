// Member metadata gossiped with every `alive`: what the scheduler needs to
// know about a node (role, resources, GPUs, labels). Bounded: it rides in
// gossip messages, so its encoded size is capped at MAX_META_BYTES.
import { Encoder } from 'cbor-x'
import { z } from 'zod'

/** Encoded (CBOR) size cap of one member's metadata. */
export const MAX_META_BYTES = 4096
export const MAX_ADDRS = 16
export const MAX_ADDR_CHARS = 256
export const MAX_LABELS = 64
export const MAX_GPUS = 64

export const GpuSchema = z.object({
  vendor: z.string().max(64),
  model: z.string().max(128),
  memoryBytes: z.number().int().nonnegative(),
  index: z.number().int().nonnegative().max(1023)
})

export const ResourcesSchema = z.object({
  cpus: z.number().nonnegative().max(1_000_000),
  memoryBytes: z.number().int().nonnegative(),
  gpus: z.array(GpuSchema).max(MAX_GPUS)
})

/**
 * What this node's config lets capsules have beyond the defaults (absent:
 * nothing, as from agents older than the setting). The scheduler places
 * `network = "host"` and `gaming` capsules only where these are true.
 */
export const CapsulePolicySchema = z.object({
  allowHostNetwork: z.boolean(),
  allowGaming: z.boolean()
})

export const MemberMetaSchema = z.object({
  name: z.string().min(1).max(253),
  role: z.enum(['server', 'client']),
  addrs: z.array(z.string().min(1).max(MAX_ADDR_CHARS)).max(MAX_ADDRS),
  resources: ResourcesSchema,
  labels: z.record(z.string().min(1).max(63), z.string().max(256))
    .refine(l => Object.keys(l).length <= MAX_LABELS, { message: `at most ${MAX_LABELS} labels` }),
  version: z.string().max(64),
  capsules: CapsulePolicySchema.optional()
}).refine(m => sizer.encode(m).byteLength <= MAX_META_BYTES, { message: `metadata above ${MAX_META_BYTES} bytes` })

const sizer = new Encoder({ useRecords: false, mapsAsObjects: true })

export type Gpu = z.infer<typeof GpuSchema>
export type Resources = z.infer<typeof ResourcesSchema>
export type MemberMeta = z.infer<typeof MemberMetaSchema>
export type CapsulePolicy = z.infer<typeof CapsulePolicySchema>

/** Metadata with no resources yet (the runtime fills them in later). */
export function emptyMeta (name: string, role: MemberMeta['role'] = 'server', addrs: string[] = []): MemberMeta {
  return { name, role, addrs, resources: { cpus: 0, memoryBytes: 0, gpus: [] }, labels: {}, version: '' }
}

/** Structural equality, independent of key order (decoded labels may come in any order). */
export function metaEqual (a: MemberMeta, b: MemberMeta): boolean {
  return canonical(a) === canonical(b)
}

function canonical (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>
    return `{${Object.keys(o).sort().map(k => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}
