// The capsule spec: what `bolt-agent run` (and stacks) submit. Checked by zod
// at the API boundary and again when applied from the Raft log.
import { z } from 'zod'
import { HealthSchema } from '../services/health-spec.js'
import { MIN_MEMORY_BYTES, portsProblem } from './spec-text.js'
export { MIN_MEMORY_BYTES, parseBytes, parseMemory, portsProblem } from './spec-text.js'

export const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/
export const MAX_REPLICAS = 1000

export const GpuDemandSchema = z.strictObject({
  count: z.number().int().min(0).max(64).default(0),
  vendor: z.enum(['nvidia', 'amd', 'intel']).optional(),
  /** Substring of the model name, e.g. "A100". */
  model: z.string().max(128).optional(),
  minMemoryBytes: z.number().int().nonnegative().optional()
})

/** A DNS name for the service catalog: labels of letters, digits and '-'. */
export const SERVICE_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

export const NetworkModeSchema = z.enum(['bridge', 'host', 'none'])
export type NetworkMode = z.infer<typeof NetworkModeSchema>
export const MAX_PORTS = 64

export const PortRequestSchema = z.strictObject({
  /** Absent: a dynamic port from the node's range, chosen at placement. */
  host: z.number().int().min(1, 'a host port is 1-65535').max(65535, 'a host port is 1-65535').optional(),
  container: z.number().int().min(1, 'a container port is 1-65535').max(65535, 'a container port is 1-65535'),
  proto: z.enum(['tcp', 'udp']).default('tcp')
})
export type PortRequest = z.infer<typeof PortRequestSchema>

/** A port as placed: what the instance record in Raft holds (`ports: [{ host, container, proto }]`). */
export const AssignedPortSchema = z.strictObject({
  host: z.number().int().min(1).max(65535),
  container: z.number().int().min(1).max(65535),
  proto: z.enum(['tcp', 'udp'])
})
export type AssignedPort = z.infer<typeof AssignedPortSchema>

export const CapsuleSpecSchema = z.strictObject({
  name: z.string().regex(NAME_RE, 'lowercase letters, digits, _ . - (max 63), starting with a letter or digit'),
  image: z.string().min(1).max(512),
  args: z.array(z.string().max(4096)).max(256).default([]),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name'), z.string().max(32_768)).default({}),
  resources: z.strictObject({
    /** CPUs (fractions allowed); the scheduler reserves them, the runtime sets the quota. */
    cpu: z.number().min(0).max(1024).default(0.1),
    memoryBytes: z.number().int().min(MIN_MEMORY_BYTES, `memory limits start at ${MIN_MEMORY_BYTES} bytes (4 MiB)`).default(64 * 1024 * 1024),
    gpus: GpuDemandSchema.prefault({})
  }).prefault({}),
  labels: z.record(z.string().max(63), z.string().max(256)).default({}),
  /** Node selectors (`--on k=v`): every pair must match the node's labels. */
  on: z.record(z.string().max(63), z.string().max(256)).default({}),
  replicas: z.number().int().min(1).max(MAX_REPLICAS).default(1),
  restart: z.strictObject({
    policy: z.enum(['never', 'on-failure', 'always']).default('never'),
    /** Restarts before the instance is marked failed (on-failure). */
    maxRetries: z.number().int().min(0).max(1000).default(5),
    /** First back-off; doubled per restart up to 5 minutes. */
    backoffMs: z.number().int().min(0).max(300_000).default(1000)
  }).prefault({}),
  strategy: z.enum(['binpack', 'spread']).default('binpack'),
  /** Input and sound devices of the node: placed only on nodes that allow gaming. */
  gaming: z.boolean().default(false),
  volumes: z.array(z.strictObject({ host: z.string().max(4096), target: z.string().max(4096), readOnly: z.boolean().default(false) })).max(64).default([]),
  /**
   * bridge (absent = bridge): a namespace on the node's bridge; host: the
   * node's own network, placed only on nodes whose config allows it; none:
   * loopback only.
   */
  network: NetworkModeSchema.optional(),
  /** The catalog and DNS name (`NAME.service.bolt`); default: the capsule's name. */
  service: z.string().regex(SERVICE_NAME_RE, 'a DNS label: lowercase letters, digits and -').optional(),
  health: HealthSchema.optional(),
  /**
   * When the capsule's node is cut off from the cluster (Nomad's `disconnect`):
   * absent, it keeps running (the edge default) and is replaced after the
   * dead-node grace; `stopAfterMs`, the node stops it after that long out of
   * touch (fencing), and the scheduler replaces it only after that grace.
   */
  disconnect: z.strictObject({ stopAfterMs: z.number().int().min(1000).max(86_400_000) }).optional(),
  /** `--entrypoint`: replaces the image's Entrypoint. */
  entrypoint: z.array(z.string().max(4096)).min(1).max(64).optional(),
  /** `-w`: the working directory inside the capsule. */
  workdir: z.string().startsWith('/', 'an absolute path').max(4096).optional(),
  /** `-u`: uid or uid:gid, numeric (names are not resolved). */
  user: z.string().regex(/^\d{1,10}(:\d{1,10})?$/, 'uid or uid:gid, numeric').optional(),
  /** `run --rm`: the leader removes the capsule once every instance has exited or failed for good. */
  autoRemove: z.boolean().optional(),
  /** Published ports (`-p`): a host port (absent = dynamic, from the node's range) forwarded to a container port. */
  ports: z.array(PortRequestSchema).max(MAX_PORTS).default([])
}).superRefine((s, ctx) => {
  const problem = portsProblem(s.network ?? 'bridge', s.ports)
  if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['ports'], message: problem })
})
export type CapsuleSpec = z.infer<typeof CapsuleSpecSchema>
export type CapsuleSpecInput = z.input<typeof CapsuleSpecSchema>

export const InstanceStateSchema = z.enum(['pending', 'pulling', 'running', 'exited', 'failed', 'lost'])
export type InstanceState = z.infer<typeof InstanceStateSchema>

/** Instance names: the capsule's name for one replica, `name-i` for several. */
export function instanceName (capsule: string, index: number, replicas: number): string {
  return replicas === 1 ? capsule : `${capsule}-${index}`
}
