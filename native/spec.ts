// The capsule run spec: what the supervisor asks this node to run. Checked by
// zod at the boundary; everything downstream uses the inferred type.
import { z } from 'zod'
import { InvalidSpecError } from './errors.js'
import { PortMappingSchema } from './net/bridge.js'

export const CAPSULE_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/

export const RlimitSchema = z.object({
  type: z.string().regex(/^RLIMIT_[A-Z]+$/),
  soft: z.number().int().nonnegative(),
  hard: z.number().int().nonnegative()
})

export const VolumeSchema = z.object({
  hostPath: z.string().startsWith('/'),
  containerPath: z.string().startsWith('/'),
  readOnly: z.boolean().default(false)
})

export const NetworkSchema = z.union([
  z.literal('host'),
  /** A fresh network namespace for this capsule, with only loopback. */
  z.literal('private'),
  /** Join a namespace prepared elsewhere (`ip netns add`): `/var/run/netns/<name>`. */
  z.object({ netnsPath: z.string().startsWith('/') }),
  /** A namespace of its own on the node's bridge (see net/bridge.ts), with these host ports forwarded to it. */
  z.object({ bridge: z.object({ ports: z.array(PortMappingSchema).max(64).default([]) }) })
])

export const GamingSchema = z.object({
  /** X11 display to pass through, e.g. ":0". */
  display: z.string().optional(),
  /** Wayland socket name under XDG_RUNTIME_DIR, e.g. "wayland-0". */
  waylandDisplay: z.string().optional(),
  /** Host XDG_RUNTIME_DIR holding the Wayland, PulseAudio and PipeWire sockets. */
  xdgRuntimeDir: z.string().startsWith('/').optional()
})

export const CapsuleRunSpecSchema = z.object({
  name: z.string().regex(CAPSULE_NAME_RE, 'letters, digits, "_", "." and "-", starting with a letter or digit, at most 63'),
  /** An image id returned by `prepareImage`. */
  image: z.string().regex(/^sha256:[a-f0-9]{64}$/),
  /** Replaces the image's Entrypoint when set. */
  entrypoint: z.array(z.string()).max(1024).optional(),
  /** Replaces the image's Cmd when set. */
  args: z.array(z.string()).max(4096).optional(),
  env: z.record(z.string().regex(/^[^=\0]+$/), z.string()).default({}),
  cwd: z.string().startsWith('/').optional(),
  /** "uid", "uid:gid" (numeric; names are not resolved). */
  user: z.string().regex(/^\d+(:\d+)?$/).optional(),
  hostname: z.string().max(63).optional(),
  resources: z.object({
    /** CPU time as a number of CPUs (0.5 = half of one); a CFS quota. */
    cpus: z.number().positive().max(4096).optional(),
    /** Relative weight when CPUs are contended (cgroup v1 shares, 2..262144). */
    cpuShares: z.number().int().min(2).max(262144).optional(),
    memoryBytes: z.number().int().min(4 * 1024 * 1024).optional(),
    pids: z.number().int().positive().optional()
  }).default({}),
  rlimits: z.array(RlimitSchema).max(32).optional(),
  network: NetworkSchema.default('host'),
  readOnlyRootfs: z.boolean().default(false),
  volumes: z.array(VolumeSchema).max(64).default([]),
  /** A number of GPUs from this node's CDI spec, or fully qualified CDI device names. */
  gpus: z.union([z.number().int().nonnegative().max(64), z.array(z.string()).max(64)]).optional(),
  gaming: z.union([z.boolean(), GamingSchema]).optional(),
  capAdd: z.array(z.string().regex(/^CAP_[A-Z_]+$/)).max(64).default([]),
  capDrop: z.array(z.string().regex(/^(CAP_[A-Z_]+|ALL)$/)).max(64).default([]),
  /** Log rotation for this capsule; defaults from the runtime options. */
  log: z.object({ maxBytes: z.number().int().min(4096).optional(), maxFiles: z.number().int().min(1).max(32).optional() }).default({}),
  /** Seconds given to a SIGTERM before SIGKILL, unless `stop` says otherwise. */
  stopSignal: z.enum(['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2']).optional(),
  labels: z.record(z.string(), z.string()).default({})
})

export type CapsuleRunSpecInput = z.input<typeof CapsuleRunSpecSchema>
export type CapsuleRunSpec = z.output<typeof CapsuleRunSpecSchema>

export function parseRunSpec (input: unknown): CapsuleRunSpec {
  const r = CapsuleRunSpecSchema.safeParse(input)
  if (!r.success) {
    throw new InvalidSpecError(`capsule spec is invalid: ${r.error.issues.map(i => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`)
  }
  return r.data
}
